"""One event of a local run, from its body to exactly one place: the results, the dead letters,
or the filter's count. Nothing that goes wrong with one event stops the run.

The order is the Sensor's and Argo's: the body must have parsed (:func:`events.parse_body`
names why not), the trigger's filter must pass (a dropped event is counted, not dead-lettered),
the payload must give the pipeline's inputs, then the workflow runs. Whatever fails on the way
(a filter that cannot compare a value, a payload nested deeper than the encoder goes, a result
too large for its topic, a bug) becomes a dead letter whose reason names the step and the real
error; the event is acknowledged once its record is written, so its offset can be committed and
a restart does not stop on it again. Only a sink that cannot write even a dead letter stops the
run: then the event is not acknowledged, so nothing past it is committed and it is read again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from rtflow import ir
from rtflow.stages import semantics
from rtflow.stages.dead_letters import letter
from rtflow.stages.events import Event, Sink
from rtflow.stages.inference import GENERATE_FUNCTION

if TYPE_CHECKING:
    from rtflow.stages.local_results import EventResult
    from rtflow.stages.run_report import RunSummary

__all__ = ["EventRouter"]


class _Runs(Protocol):
    def run_event(self, event_id: str, inputs: Mapping[str, str]) -> EventResult: ...


def _error(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, RecursionError):
        text = "nested too deeply (deeper than Python's recursion limit)"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class EventRouter:
    """Routes events to ``output`` or ``dead_letter`` and counts them in ``summary``."""

    def __init__(
        self,
        pipeline: ir.Pipeline,
        executor: _Runs,
        output: Sink,
        dead_letter: Sink,
        summary: RunSummary,
    ) -> None:
        self.pipeline = pipeline
        self.executor = executor
        self.output = output
        self.dead_letter = dead_letter
        self.summary = summary
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.first_tokens: list[float] = []
        """Time to first token (ms) of each ``rtflow.generate`` step that succeeded."""
        self.generations = [
            t.name for t in pipeline.tasks if pipeline.stage(t.stage).function == GENERATE_FUNCTION
        ]
        self.trigger = pipeline.triggers[0] if pipeline.triggers else None
        self.abandoned = threading.Event()
        """Set when the run stops at once (a second signal): events still running are neither
        written nor acknowledged, so a restart runs them again."""

    def flush(self) -> None:
        self.output.flush()
        self.dead_letter.flush()

    def _run(self, event: Event) -> tuple[str | None, EventResult | None, bool]:
        """(reason it failed, its result, whether the filter dropped it)."""
        if event.error is not None:
            return event.error, None, False
        if self.trigger is not None and isinstance(event.body, Mapping):
            try:
                passes = semantics.trigger_passes(self.trigger, event.body, event.metadata)
            except Exception as exc:
                return (
                    f"filter: {_error(exc) if not isinstance(exc, ValueError) else exc}",
                    None,
                    False,
                )
            if not passes:
                return None, None, True
        try:
            inputs = semantics.event_inputs(self.pipeline, event.body, event.metadata)
        except (semantics.PayloadError, ValueError) as exc:
            return f"payload: {exc}", None, False
        except Exception as exc:
            return f"payload: {_error(exc)}", None, False
        try:
            result = self.executor.run_event(event.id, inputs)
        except Exception as exc:  # a bug here must not lose the event
            return f"local executor error: {_error(exc)}", None, False
        return (result.reason if result.status == "Failed" else None), result, False

    def handle(self, event: Event) -> None:
        started = time.monotonic()
        reason, result, filtered = self._run(event)
        if self.abandoned.is_set():
            return  # its run was cut short: not a result, not a dead letter, not acknowledged
        if filtered:
            # The Sensor would start no run for it: not a failure, nothing to output.
            with self.lock:
                self.summary.events += 1
                self.summary.filtered += 1
            if event.ack is not None:
                event.ack()
            return
        first_tokens: list[float] = []
        if reason is None and result is not None:
            try:
                record = result.record(self.pipeline)
                self.output.write(record)
            except Exception as exc:  # too large for its topic, not encodable: a dead letter
                reason = f"the result cannot be written: {_error(exc)}"
            else:
                first_tokens = self._first_tokens(record)
        if reason is not None:
            self._dead_letter(event, reason, result.workflow if result else None)
        with self.lock:
            self.summary.events += 1
            self.latencies.append((time.monotonic() - started) * 1000)
            self.first_tokens += first_tokens
            if reason is None:
                self.summary.succeeded += 1
            else:
                self.summary.failed += 1
                self.summary.dead_lettered += 1
                self.summary.failures.append((event.id, reason))
        if event.ack is not None:
            event.ack()

    def _first_tokens(self, record: Mapping[str, Any]) -> list[float]:
        """The ``ttft_ms`` the event's generate steps answered (each item of a fan-out)."""
        found: list[float] = []
        for task in self.generations:
            value = record.get("outputs", {}).get(task, {}).get("result")
            for answer in value if isinstance(value, list) else [value]:
                ttft = answer.get("ttft_ms") if isinstance(answer, Mapping) else None
                if isinstance(ttft, int | float) and not isinstance(ttft, bool):
                    found.append(float(ttft))
        return found

    def _dead_letter(self, event: Event, reason: str, workflow: str | None) -> None:
        record = letter(event, reason, pipeline=self.pipeline.name, workflow=workflow)
        try:
            self.dead_letter.write(record)
        except Exception as exc:
            # the last resort: the reason and the source without the payload
            bare: dict[str, Any] = {k: v for k, v in record.items() if k != "payload"}
            bare["payload_error"] = f"the payload could not be written: {_error(exc)}"
            self.dead_letter.write(bare)
