"""A stream worker's Prometheus metrics, served on its metrics port.

Recorded once per batch, not once per event and stage: at 20,000 events/s a histogram
observation per event per stage would cost more CPU than the fraud stages themselves. Stage
times are therefore per batch (with the batch size beside them); the end-to-end latency of
events (producer timestamp to produced) is observed per event, since that is the figure a
latency budget is about.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (
    0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0,
    2.5,
)  # fmt: skip
log = logging.getLogger("rtflow.stream")
TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


class StreamMetrics:
    """The metrics of one worker process, in a registry of its own."""

    def __init__(
        self, pipeline: str, worker: str, settings: Mapping[str, str] | None = None
    ) -> None:
        """``settings``: how this worker runs (guarantee, batches in flight), as labels of
        ``rtflow_stream_worker``, so a dashboard or a test reads them off the running process."""
        self.registry = CollectorRegistry()
        labels = {"pipeline": pipeline, "worker": worker}
        r = self.registry
        self.events = Counter(
            "rtflow_stream_events", "Events consumed, by outcome", ["outcome"], registry=r
        )
        self.dead_lettered = Counter(
            "rtflow_stream_dead_lettered", "Events sent to the dead-letter topic", ["reason"],
            registry=r,
        )  # fmt: skip
        self.latency = Histogram(
            "rtflow_stream_event_latency_seconds",
            "Producer timestamp of an input event to its results produced",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage = Histogram(
            "rtflow_stream_stage_batch_seconds",
            "Time a stage took for one batch",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.batch = Histogram(
            "rtflow_stream_batch_events", "Events per consumed batch", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.inference_batch = Histogram(
            "rtflow_stream_inference_batch_rows", "Rows per Triton request", ["stage"],
            buckets=BATCH_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_token = Histogram(
            "rtflow_stream_time_to_first_token_seconds",
            "A generation's request sent to its first token (rtflow.generate steps)",
            ["stage"],
            buckets=TOKEN_BUCKETS,
            registry=r,
        )
        self.answer_cache = Counter(
            "rtflow_stream_inference_cache",
            "Rows of an inference stage answered from the worker's cache (hit) or by Triton "
            "(miss), for models declared with client_cache",
            ["stage", "outcome"],
            registry=r,
        )
        self.commit = Histogram(
            "rtflow_stream_commit_seconds",
            "Transaction commit (exactly-once) or offset commit (at-least-once)",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_phase = Histogram(
            "rtflow_stream_commit_phase_seconds",
            "A commit's phases: offsets (to the group/transaction coordinators), flush (the "
            "records acknowledged), end (EndTxn)",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.aborts = Counter(
            "rtflow_stream_aborted_transactions", "Transactions aborted, by cause", ["cause"],
            registry=r,
        )  # fmt: skip
        self.retries = Counter(
            "rtflow_stream_dependency_retries", "Batches retried after a dependency failed",
            registry=r,
        )  # fmt: skip
        self.lag = Gauge(
            "rtflow_stream_consumer_lag", "Messages behind the high watermark", ["partition"],
            registry=r,
        )  # fmt: skip
        self.unreadable_offsets = Gauge(
            "rtflow_stream_unreadable_offset_partitions",
            "Assigned partitions whose committed offsets the group cannot read (an open "
            "transaction holds them)",
            registry=r,
        )
        self._slow_logged_at: dict[str, float] = {}  # the last "slow ..." warning of each kind
        self._slow_unlogged: dict[str, int] = {}  # slow ones since then, not logged
        described = {**labels, **(settings or {})}
        self.info = Gauge("rtflow_stream_worker", "This worker", list(described), registry=r)
        self.info.labels(**described).set(1)

    def serve(self, port: int, address: str = "0.0.0.0") -> None:
        start_http_server(port, addr=address, registry=self.registry)

    def observe_lag(self, lags: Mapping[int, int]) -> None:
        for partition, lag in lags.items():
            self.lag.labels(partition=str(partition)).set(lag)

    def observe_commit(
        self, seconds: float, phases: Mapping[str, float], slow_after: float
    ) -> None:
        """A commit's time and its phases' (offsets to the coordinators, flush of the records,
        EndTxn); a slow one is logged with them (:meth:`_slow`)."""
        self.commit.observe(seconds)
        for phase, taken in phases.items():
            self.commit_phase.labels(phase=phase).observe(taken)
        self._slow("commit", seconds, phases, slow_after)

    def observe_iteration(
        self, seconds: float, phases: Mapping[str, float], slow_after: float
    ) -> None:
        """One turn of the worker's loop (consume, each stage, produce, waiting for the
        previous commit): not a metric (the stage histograms are), but a slow one is logged
        with its phases, because while the loop is held no transaction is committed and every
        event in flight waits: the reader sees a stall that no single commit explains."""
        self._slow("iteration", seconds, phases, slow_after)

    def _slow(
        self, what: str, seconds: float, phases: Mapping[str, float], slow_after: float
    ) -> None:
        """Log "slow <what>" with its phases in ms, at most once a second for each kind (the
        line says how many were not logged since), so that a latency spike in a reader's
        figures can be traced to the step that took it."""
        if seconds < slow_after:
            return
        now = time.monotonic()
        if now - self._slow_logged_at.get(what, float("-inf")) < 1.0:
            self._slow_unlogged[what] = self._slow_unlogged.get(what, 0) + 1
            return
        log.warning(
            f"slow {what}",
            extra={f"{what}_ms": round(seconds * 1000, 1),
                   **{f"{k}_ms": round(v * 1000, 1) for k, v in phases.items()},
                   f"slow_{what}s_not_logged": self._slow_unlogged.get(what, 0)},
        )  # fmt: skip
        self._slow_logged_at[what], self._slow_unlogged[what] = now, 0
