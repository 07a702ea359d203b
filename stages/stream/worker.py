"""The stream worker: a long-running Kafka consumer that runs one fused group of the hot path.

One process, one consumer, and its :class:`~rtflow.stages.stream.output.Output` (one
producer, or two transactional ones for exactly-once: EOS v2, KIP-447). The loop is: consume
up to ``max_events`` (waiting at most ``max_wait_ms``), run the batch through the plan, produce
its records into the open transaction, and commit when the transaction interval has passed
(on a thread of the output's, while the loop goes on: :mod:`.output`).

**Two batches in flight** (``batches_in_flight=2``): the next batch is decoded and run up to
its first Triton request while Triton answers the current one; batches are still produced in
the order they were consumed.

**Failures.** A dependency failing for a batch (Triton down, a broker error that aborts the
transaction) never commits past an unprocessed event: the output commits what is whole and
aborts the rest, the started batches are dropped, and the consumer seeks back to the first
offset that is not committed; the batch is retried with backoff. A fatal producer error
(fenced by a newer instance with the same transactional id) ends the process with exit code
3, for its supervisor (Kubernetes, or ``rtflow run --local``) to start a fresh one. SIGTERM
finishes the batches in flight, commits, leaves the group and returns 0.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtflow.stages.stream.drift import attach as attach_drift
from rtflow.stages.stream.lag import LagWatch
from rtflow.stages.stream.metrics import StreamMetrics
from rtflow.stages.stream.output import Output
from rtflow.stages.stream.plan import (
    BatchResult,
    DependencyError,
    Message,
    Plan,
    StartedBatch,
)
from rtflow.stages.stream.settings import (
    EXIT_FATAL,
    EXIT_OK,
    EXIT_UNCOMMITTED,
    FatalKafkaError,
    WorkerSettings,
)

log = logging.getLogger("rtflow.stream")

LATENCY_SAMPLE = 32


TopicPartition = tuple[str, int]


@dataclass(frozen=True)
class _InFlight:
    """A batch started and not yet produced (``batches_in_flight=2``)."""

    messages: Sequence[Message]
    batch: StartedBatch
    started: float


class StreamWorker:
    def __init__(self, plan: Plan, settings: WorkerSettings) -> None:
        self.plan = plan
        self.settings = settings
        self.stream = plan.stream
        self.metrics = StreamMetrics(
            plan.pipeline.name,
            settings.worker_id,
            {
                "guarantee": plan.stream.guarantee,
                "batches_in_flight": str(plan.stream.batches_in_flight),
            },
        )
        self._lag = LagWatch(
            self.metrics, plan.consumer_group, settings.unreadable_offsets_after_seconds
        )
        self._stopping = False
        self._fatal = False
        self.consumer: Any = None
        self.output: Output | None = None
        # Batches started and not yet produced, oldest first; produced in this order.
        self._in_flight: deque[_InFlight] = deque()
        self._pipelined = plan.stream.batches_in_flight > 1
        # rtflow.drift windows: read back from their committed state before the first batch
        # and after every rewind (.drift)
        self._drift = attach_drift(plan, settings, self.metrics, self.transactional_id)

    @property
    def transactional_id(self) -> str:
        """Stable per worker (a pod's name, a local index): a restarted worker aborts what its
        crashed predecessor left open at once, instead of readers waiting out its timeout.
        The second producer's id is this one with ``-1`` appended."""
        return f"{self.plan.consumer_group}-{self.settings.worker_id}"

    def stop(self) -> None:
        self._stopping = True

    @property
    def _out(self) -> Output:
        assert self.output is not None, "connected in run()"
        return self.output

    # -- clients ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        from confluent_kafka import Consumer

        common = {"bootstrap.servers": self.settings.brokers, **self.settings.client_config}
        stream = self.stream
        self.consumer = Consumer(
            {
                **common,
                "group.id": self.plan.consumer_group,
                "client.id": f"{self.transactional_id}-consumer",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
                "enable.partition.eof": False,
                "session.timeout.ms": 10_000,
                "heartbeat.interval.ms": 1_000,
                # A fetch returns when 64 KiB are there or max_wait_ms has passed: at high rates
                # fetch.min.bytes=1 answers every fetch with a handful of records, and the
                # broker's CPU goes to fetch requests (measured: BENCHMARKS.md).
                "fetch.wait.max.ms": max(1, stream.max_wait_ms),
                "fetch.min.bytes": 65_536,
                "fetch.queue.backoff.ms": 1,
            }
        )
        self.output = Output(
            stream, self.settings, self.metrics, self.transactional_id, self.consumer, common
        )

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; the exit code (0, or EXIT_FATAL when fenced)."""
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_address)
        self._connect()
        # Models under canary: each event's version follows the rollout state (.rollout).
        from rtflow.stages.stream.rollout import start_rollouts

        rollouts = start_rollouts(
            self.plan.steps, self.settings.brokers, self.transactional_id,
            config=self.settings.client_config, registry=self.metrics.registry,
        )  # fmt: skip
        # The loop allocates many short-lived, acyclic objects (freed by reference counting);
        # default GC thresholds run a collection every 700 allocations and, now and then, a
        # full one over every module object: a p99 spike. Start-up objects are frozen out of
        # the collector and young collections made rarer.
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        self.consumer.subscribe(
            [self.plan.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info(
            "worker started",
            extra={"topic": self.plan.input_topic, "group": self.plan.consumer_group,
                   "guarantee": self.stream.guarantee, "transactional_id": self.transactional_id},
        )  # fmt: skip
        backoff = 0.1
        wait = self.stream.max_wait_ms / 1000.0
        try:
            while not self._stopping:
                messages: list[Message] = []
                try:
                    started = time.perf_counter()
                    # With a batch in flight, take only what is there: it finishes meanwhile.
                    messages = self._consume(0.0 if self._in_flight else wait)
                    self._drift.restore_if_stale()  # after consume: a revoke runs inside it
                    consumed = time.perf_counter()
                    if self._pipelined:
                        phases = self._overlapped(messages)
                    else:
                        phases = self._process(messages) if messages else {}
                    processed = time.perf_counter()
                    self._out.commit_if_due()
                    self.metrics.observe_iteration(
                        time.perf_counter() - started,
                        {"consume": consumed - started, **phases,
                         "commit_wait": time.perf_counter() - processed},
                        self.settings.slow_seconds,
                    )  # fmt: skip
                    backoff = 0.1
                except DependencyError as exc:
                    self.metrics.retries.inc()
                    log.warning("dependency failed; retrying from the last commit", exc_info=exc)
                    self._rewind_after([*self._dropped_in_flight(), *messages])
                    self._sleep(backoff)
                    backoff = min(backoff * 2, self.settings.max_backoff_seconds)
                self._lag.observe(self.consumer)
            try:
                self._drain()
                self._out.finish()
            except DependencyError as exc:
                log.error("the last commit failed; the next owner redoes it", exc_info=exc)
                return EXIT_UNCOMMITTED
            self.consumer.close()
            self.consumer = None
            return EXIT_OK
        except FatalKafkaError as exc:
            log.error("fatal Kafka error: this worker stops", exc_info=exc)
            self._fatal = True
            return EXIT_FATAL
        finally:
            # A stuck commit thread cannot be joined; serve() then ends the process with
            # os._exit, and the next process's init_transactions aborts what was open.
            if self.output is not None:
                self.output.close(stuck=self._fatal)
            if rollouts is not None:
                rollouts.close()
            self.plan.close()
            if self.consumer is not None:
                with contextlib.suppress(Exception):
                    self.consumer.close()

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self._stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, seconds))

    def _consume(self, wait: float) -> list[Message]:
        from confluent_kafka import KafkaError

        # consume(n, timeout) waits until n messages are there OR the timeout: at 20,000
        # events/s a 1,000-event batch would always wait the whole max_wait. Take what is
        # there now; only when nothing is, block for the first message (poll returns as soon
        # as one arrives) and take whatever came with it.
        raw = self.consumer.consume(self.stream.max_events, 0)
        if not raw:
            first = self.consumer.poll(wait)
            if first is None:
                return []
            raw = [first, *self.consumer.consume(self.stream.max_events - 1, 0)]
        messages = []
        for msg in raw:
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise FatalKafkaError(str(error))
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer: %s", error)
                continue
            messages.append(
                Message(
                    msg.topic(),
                    msg.partition(),
                    msg.offset(),
                    msg.value(),
                    msg.key(),
                    msg.headers() or [],
                    msg.timestamp()[1],
                )
            )
        return messages

    def _process(self, messages: Sequence[Message]) -> dict[str, float]:
        """Run a batch and produce its records; the seconds of each stage and of producing."""
        started = time.perf_counter()
        return self._produced(messages, self.plan.execute(messages), started)

    def _produced(
        self, messages: Sequence[Message], result: BatchResult, started: float
    ) -> dict[str, float]:
        self._record(result, len(messages))
        executed = time.perf_counter()
        self._out.produce(result.records, messages)
        ended = time.perf_counter()
        self.metrics.stage.labels(stage="(batch)").observe(ended - started)
        return {**result.stage_seconds, "produce": ended - executed}

    def _overlapped(self, messages: Sequence[Message]) -> dict[str, float]:
        """Two batches in flight: start this one (up to its first Triton request), then finish
        and produce the one before it, whose answers came meanwhile. Batches are produced in
        the order they were consumed, so offsets and a key's records stay in order."""
        phases: dict[str, float] = {}
        if messages:
            started = time.perf_counter()
            self._in_flight.append(_InFlight(messages, self.plan.start(messages), started))
            phases["start"] = time.perf_counter() - started
        if len(self._in_flight) > 1 or (self._in_flight and not messages):
            phases.update(self._finish_oldest())
        return phases

    def _finish_oldest(self) -> dict[str, float]:
        oldest = self._in_flight[0]
        phases = self._produced(oldest.messages, oldest.batch.finish(), oldest.started)
        self._in_flight.popleft()  # only once produced: a failure above rewinds it too
        return phases

    def _dropped_in_flight(self) -> list[Message]:
        """Drop the batches started and not produced; their messages (to consume again)."""
        dropped = [m for b in self._in_flight for m in b.messages]
        for started in self._in_flight:
            started.batch.discard()
        self._in_flight.clear()
        return dropped

    def _drain(self) -> None:
        """Before stopping: finish and produce the batches in flight, so the last commit
        covers every event consumed."""
        try:
            while self._in_flight:
                self._finish_oldest()
        except DependencyError as exc:
            log.warning("a batch in flight failed at stop; the next owner redoes it", exc_info=exc)
            self._rewind_after(self._dropped_in_flight())

    def _record(self, result: BatchResult, consumed: int) -> None:
        m = self.metrics
        m.batch.observe(consumed)
        m.events.labels(outcome="processed").inc(result.processed)
        if result.filtered:
            m.events.labels(outcome="filtered").inc(result.filtered)
        if result.handed_off:
            m.events.labels(outcome="handed_off").inc(result.handed_off)
        for reason, count in result.dead_lettered.items():
            m.events.labels(outcome="dead_lettered").inc(count)
            m.dead_lettered.labels(reason=reason).inc(count)
        for stage, seconds in result.stage_seconds.items():
            m.stage.labels(stage=stage).observe(seconds)
        # At most LATENCY_SAMPLE observations a batch, evenly spread: a histogram observation
        # per event costs more than a fraud stage, and the quantiles of an even sample of
        # each batch are the same figures.
        latencies = result.latencies_ms
        step = max(1, len(latencies) // LATENCY_SAMPLE)
        for latency in latencies[::step]:
            m.latency.observe(latency / 1000.0)

    def _seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        for (topic, partition), offset in offsets.items():
            # A partition no longer ours is skipped: its new owner starts from the commit.
            with contextlib.suppress(KafkaException):
                self.consumer.seek(KafkaTopicPartition(topic, partition, offset))

    def _rewind_after(self, messages: Sequence[Message]) -> None:
        """A batch failed: commit the finished batches before it, abort what is partial, and
        consume again from the first event that is not committed."""
        self._seek(self._out.failed(messages))
        self._drift.stale()

    # -- rebalances ------------------------------------------------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        log.info("assigned %s", [f"{p.topic}/{p.partition}" for p in partitions])

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        """Before partitions go to another worker, what was done with them must be committed
        (or aborted): the new owner starts from the committed offsets."""
        log.info("revoked %s", [f"{p.topic}/{p.partition}" for p in partitions])
        # Batches started and not produced are dropped: a revoked partition's new owner
        # consumes them again from the commit; one kept here (an incremental rebalance) is
        # rewound to them.
        revoked = {(p.topic, p.partition) for p in partitions}
        kept: dict[TopicPartition, int] = {}
        for message in self._dropped_in_flight():
            tp = (message.topic, message.partition)
            if tp not in revoked:
                kept[tp] = min(message.offset, kept.get(tp, message.offset))
        self._out.revoked()
        self._seek(kept)
        self._drift.stale()

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions lost without a revoke (session timed out): this worker may be a zombie,
        so nothing of the open transaction may become visible."""
        log.warning("lost %s", [f"{p.topic}/{p.partition}" for p in partitions])
        self._dropped_in_flight()
        self._out.lost()
        self._drift.stale()
