"""What a stream worker is told (where it connects, who it is, its limits) and how it ends.

Apart from the worker's loop so that the launcher, the tests and the supervisor
(``rtflow run --local``, Kubernetes through the exit code) share them without the loop.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from rtflow.stream_layout import COMMIT_DEADLINE_SECONDS

__all__ = ["EXIT_FATAL", "EXIT_OK", "EXIT_UNCOMMITTED", "FatalKafkaError", "WorkerSettings"]

EXIT_OK = 0
EXIT_UNCOMMITTED = 1  # stopped, but the last commit failed (its events are redone, not lost)
EXIT_FATAL = 3  # fenced or another fatal Kafka error: start a fresh process


class FatalKafkaError(RuntimeError):
    """The producer cannot go on (fenced by a newer instance, or a fatal librdkafka error)."""


@dataclass(frozen=True)
class WorkerSettings:
    """Where a worker connects and who it is; the plan says what it does."""

    brokers: str
    worker_id: str = field(default_factory=socket.gethostname)
    triton: Mapping[str, str] = field(default_factory=dict)  # server -> gRPC host:port
    client_config: Mapping[str, str] = field(default_factory=dict)  # TLS/SASL from Secrets
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    transaction_timeout_ms: int = 10_000
    max_backoff_seconds: float = 5.0
    commit_deadline_seconds: float = COMMIT_DEADLINE_SECONDS
    """A commit still running after this is stuck, not slow (librdkafka's
    ``send_offsets_to_transaction`` can wait forever after its coordinator went away:
    confluentinc/librdkafka#5456, #5511): the worker exits with EXIT_FATAL so that a fresh
    process, with the same transactional id, aborts the transaction and redoes it. As long as
    the transaction timeout: past it the coordinator aborts the transaction anyway."""
    slow_seconds: float = 0.1
    """A commit, or a turn of the loop, taking this long is logged (a warning with its phases,
    at most one line a second of each): a few milliseconds is normal, and one such is a
    latency spike for every event in flight."""
    unreadable_offsets_after_seconds: float = 30.0
    """An assigned partition still without a position after this long has its committed
    offsets checked (rtflow.stages.stream.lag): three transaction timeouts by default, so a
    predecessor's open transaction has been aborted by then."""
