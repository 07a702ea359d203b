"""What a stream worker's batch is made of: the messages it consumed, each event's state on
its way through the hot path, the records to produce, and why an event was dead-lettered."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rtflow.stages import semantics

Headers = list[tuple[str, bytes]]

# Why an event went to the dead-letter topic (the ``rtflow-reason`` header, a metric label).
NOT_JSON = "not_json"
PAYLOAD = "payload"  # does not fit the trigger's mapping, the pipeline's inputs or the schema
BAD_INPUT = "bad_input"  # a stage raised BadInput, or an input does not fit a stage
STAGE_FAILED = "stage_failed"  # a stage raised anything else (a bug: retrying cannot help)
INFERENCE_REJECTED = "inference_rejected"  # Triton refused this event's tensors
REASONS = (NOT_JSON, PAYLOAD, BAD_INPUT, STAGE_FAILED, INFERENCE_REJECTED)


class DependencyError(RuntimeError):
    """A dependency (Triton, the broker) failed for the whole batch: retry it, commit nothing
    past it. Never a property of one event."""


@dataclass(frozen=True)
class Record:
    """One message to produce inside the batch's transaction."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)


@dataclass
class Message:
    """The part of a consumed Kafka message the plan reads (so tests need no broker)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    timestamp_ms: int = 0


@dataclass
class EventState:
    """One event on its way through the hot path."""

    message: Message
    body: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, semantics.Phase] = field(default_factory=dict)
    traceparent: str = ""
    dead: tuple[str, str, str] | None = None  # (reason, stage, detail)

    def fail(self, reason: str, stage: str, detail: str) -> None:
        self.dead = (reason, stage, detail)


@dataclass
class BatchResult:
    records: list[Record]
    processed: int = 0
    filtered: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    handed_off: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
