"""The stream worker: a long-running Kafka consumer that runs one fused group of the hot path.

One process, one consumer, one producer (transactional for exactly-once: EOS v2, KIP-447). The
loop is: consume up to ``max_events`` (waiting at most ``max_wait_ms``), run the batch through
the plan, produce its records into the open transaction, and every
``transaction_interval_ms`` commit the transaction together with the consumed offets
(``send_offsets_to_transaction`` with the consumer's group metadata, so a worker that lost its
partitions in a rebalance is fenced and its writes are never visible).

**The commit overlaps the next batch, on a second producer.** ``commit_transaction`` blocks
for a broker round trip or two (about 2.5 ms here); a serial loop adds that to every event's
latency and takes it off the throughput. Here the commit runs on a helper thread (librdkafka
releases the GIL) while the main thread consumes and runs the next batch. That batch goes into
a transaction of a *second* transactional producer: with one producer it would wait for the
commit to end, and a transaction begun right after a commit is refused by the coordinator
(CONCURRENT_TRANSACTIONS) until the previous commit's markers are written, which librdkafka,
without KIP-890, retries after a fixed 20 ms: a 20 ms stall in about one transaction of six
(measured: BENCHMARKS.md). Alternating two producers gives each one a whole interval between
its commit and its next transaction. Two rules keep this exactly-once and in order:

- commits are serial (the next one starts when the previous ended), so a partition's offsets
  are committed in order, and a failed commit aborts the open transaction after it as well;
- the next producer writes nothing before the previous producer's records are acknowledged
  (they are flushed before the commit ends), so in every output partition a later batch's
  records come after an earlier batch's, and a key's order holds for ``read_committed`` readers.

The commit's own round trips overlap too: the offsets go to the coordinators
(``send_offsets_to_transaction``) while a second helper thread flushes the records, so a
commit takes the longer of the two plus EndTxn (measured: BENCHMARKS.md).

**Failures.** A dependency failing for a batch (Triton down, a broker error that aborts the
transaction) never commits past an unprocessed event: the open transaction is committed if it
holds only finished batches, or aborted, and the consumer seeks back to the first offset that
is not committed; the batch is retried with backoff. A fatal producer error (fenced by a newer
instance with the same transactional id) ends the process with exit code 3, for its supervisor
(Kubernetes, or ``rtflow run --local``) to start a fresh one. SIGTERM finishes the batch in
flight, commits, leaves the group and returns 0.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtflow.stages.stream.lag import LagWatch
from rtflow.stages.stream.metrics import StreamMetrics
from rtflow.stages.stream.plan import (
    BatchResult,
    DependencyError,
    Message,
    Plan,
    Record,
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
        self.exactly_once = plan.stream.guarantee == "exactly_once"
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
        self._committer = cf.ThreadPoolExecutor(1, thread_name_prefix="rtflow-commit")
        # Flushes the committing producer while the committer sends its offsets (see
        # _commit_transaction): the two round trips overlap instead of adding up.
        self._flusher = cf.ThreadPoolExecutor(1, thread_name_prefix="rtflow-flush")
        self._commit: cf.Future[None] | None = None
        self._commit_started = 0.0
        self._committing_from: dict[TopicPartition, int] = {}
        self._open = False  # a transaction is open (exactly-once)
        self._opened_at = 0.0
        self._next: dict[TopicPartition, int] = {}  # offsets to commit with the open batch
        self._first: dict[TopicPartition, int] = {}  # where to rewind if it fails
        self._pending_rewind: dict[TopicPartition, int] = {}
        self._partial = False
        self._fatal = False
        self._delivery_errors: list[str] = []
        self.consumer: Any = None
        # Exactly-once alternates two transactional producers (see the module's docstring);
        # at-least-once has one. ``producer`` is the one batches go into now.
        self._producers: list[Any] = []
        self._active = 0
        self._committing: Any = None  # the producer whose transaction the running commit ends
        self._flushed: threading.Event | None = None  # its records are acknowledged
        # Batches started and not yet produced, oldest first; produced in this order.
        self._in_flight: deque[_InFlight] = deque()
        self._pipelined = plan.stream.batches_in_flight > 1

    @property
    def producer(self) -> Any:
        return self._producers[self._active]

    @property
    def transactional_id(self) -> str:
        """Stable per worker (a pod's name, a local index): a restarted worker aborts what its
        crashed predecessor left open at once, instead of readers waiting out its timeout.
        The second producer's id is this one with ``-1`` appended."""
        return f"{self.plan.consumer_group}-{self.settings.worker_id}"

    def stop(self) -> None:
        self._stopping = True

    # -- clients ---------------------------------------------------------------------------------

    def _connect(self) -> None:
        from confluent_kafka import Consumer, Producer

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
        producer: dict[str, Any] = {
            **common,
            "client.id": f"{self.transactional_id}-producer",
            "enable.idempotence": True,
            "acks": "all",
            # Records of a transaction become visible only at its commit, which flushes them:
            # lingering a few ms costs nothing and saves the broker most produce requests.
            "linger.ms": max(1, min(5, stream.transaction_interval_ms // 2))
            if self.exactly_once
            else 1,
        }
        if not self.exactly_once:
            self._producers = [Producer(producer)]
            return
        for index in range(2):
            suffix = f"-{index}" if index else ""
            transactional = Producer(
                {
                    **producer,
                    "client.id": f"{self.transactional_id}{suffix}-producer",
                    "transactional.id": f"{self.transactional_id}{suffix}",
                    "transaction.timeout.ms": self.settings.transaction_timeout_ms,
                }
            )
            transactional.init_transactions(30)
            self._producers.append(transactional)

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> int:
        """Consume until stopped; the exit code (0, or EXIT_FATAL when fenced)."""
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port, self.settings.metrics_address)
        self._connect()
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
                    consumed = time.perf_counter()
                    if self._pipelined:
                        phases = self._overlapped(messages)
                    else:
                        phases = self._process(messages) if messages else {}
                    processed = time.perf_counter()
                    self._commit_if_due()
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
                self._finish()
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
            self._committer.shutdown(wait=not self._fatal)
            self._flusher.shutdown(wait=not self._fatal)
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
        self._produce(result.records, messages)
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

    # -- producing and committing ----------------------------------------------------------------

    def _produce(self, records: Sequence[Record], messages: Sequence[Message]) -> None:
        from confluent_kafka import KafkaException

        if self.exactly_once:
            self._wait_for_flush()
        self._partial = True  # until the batch's offsets are recorded beside its records
        try:
            if self.exactly_once and not self._open:
                # The interval counts from here, after the previous commit ended: commits back
                # to back (counting from the previous commit's start) load the broker so much
                # that each takes longer, and p50 doubled (measured: BENCHMARKS.md).
                self.producer.begin_transaction()
                self._open = True
                self._opened_at = time.monotonic()
            for record in records:
                self._send(record)
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():
                raise FatalKafkaError(str(error)) from exc
            raise DependencyError(f"produce failed: {error}") from exc
        for message in messages:
            tp = (message.topic, message.partition)
            self._first.setdefault(tp, message.offset)
            self._next[tp] = message.offset + 1
        self._partial = False
        self.producer.poll(0)

    def _send(self, record: Record) -> None:
        callback = None if self.exactly_once else self._delivered
        while True:
            try:
                self.producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=record.headers,
                    on_delivery=callback,
                )
                return
            except BufferError:
                self.producer.poll(0.005)

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err}")

    def _offsets(self, offsets: Mapping[TopicPartition, int]) -> list[Any]:
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        return [KafkaTopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]

    def _commit_if_due(self) -> None:
        running = self._commit is not None and not self._commit.done()
        if (
            running
            and time.monotonic() - self._commit_started > self.settings.commit_deadline_seconds
        ):
            # The loop goes on into the other producer while a commit runs, so a stuck one
            # (librdkafka#5456) is caught here rather than by waiting for it.
            raise FatalKafkaError(
                f"a commit is stuck after {self.settings.commit_deadline_seconds:g} s"
            )
        if not self._next:
            return
        if time.monotonic() - self._opened_at < self.stream.transaction_interval_ms / 1000.0:
            return
        if running:
            return  # the previous one still runs; this batch joins the next commit
        self._wait_for_commit()
        offsets, first = self._next, self._first
        self._next, self._first = {}, {}
        self._committing_from = first
        if self.exactly_once:
            metadata = self.consumer.consumer_group_metadata()
            self._open = False
            self._committing = self.producer
            self._flushed = threading.Event()
            self._active = 1 - self._active
            flush = self._flusher.submit(self._flush, self._committing, self._flushed)
            self._commit = self._committer.submit(
                self._commit_transaction, self._committing, flush, offsets, metadata
            )
        else:
            self._commit = self._committer.submit(self._commit_offsets, offsets)
        self._commit_started = time.monotonic()
        self._opened_at = time.monotonic()

    @staticmethod
    def _flush(producer: Any, flushed: threading.Event) -> tuple[int, float]:
        """flush() sends at once, whatever linger.ms says; the other producer may write as
        soon as these records have their place in the log. (Records left, seconds taken.)"""
        started = time.perf_counter()
        try:
            return int(producer.flush(30)), time.perf_counter() - started
        finally:
            flushed.set()

    def _commit_transaction(
        self,
        producer: Any,
        flush: cf.Future[tuple[int, float]],
        offsets: Mapping[TopicPartition, int],
        metadata: Any,
    ) -> None:
        started = time.perf_counter()
        # The offsets go to the coordinators while the records are flushed on the other
        # thread: a commit is then the longer of the two plus EndTxn, not their sum.
        try:
            producer.send_offsets_to_transaction(self._offsets(offsets), metadata, 30)
            offsets_done = time.perf_counter()
        finally:
            remaining, flush_seconds = flush.result()
        if remaining:
            raise DependencyError(f"{remaining} records not acknowledged in 30 s")
        ending = time.perf_counter()
        self._retrying(lambda: producer.commit_transaction(30))
        ended = time.perf_counter()
        self.metrics.observe_commit(
            ended - started,
            {"offsets": offsets_done - started, "flush": flush_seconds, "end": ended - ending},
            self.settings.slow_seconds,
        )

    def _commit_offsets(self, offsets: Mapping[TopicPartition, int]) -> None:
        started = time.perf_counter()
        remaining = self.producer.flush(30)
        if remaining or self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            raise DependencyError(f"{remaining} undelivered; {'; '.join(errors[:3])}")
        flushed = time.perf_counter()
        self.consumer.commit(offsets=self._offsets(offsets), asynchronous=False)
        ended = time.perf_counter()
        self.metrics.observe_commit(
            ended - started,
            {"flush": flushed - started, "offsets": ended - flushed},
            self.settings.slow_seconds,
        )

    def _retrying(self, call: Any) -> None:
        from confluent_kafka import KafkaException

        for _ in range(10):
            try:
                call()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable():
                    raise
                time.sleep(0.1)
        call()

    def _wait_for_flush(self) -> None:
        """Before the next batch goes into the other producer: the committing producer's
        records must be in the log (a key's order), and a commit that already failed is
        handled now rather than after more records went out."""
        if self._commit is None or self._flushed is None:
            return
        if not self._flushed.wait(self.settings.commit_deadline_seconds):
            raise FatalKafkaError(
                f"a flush is stuck after {self.settings.commit_deadline_seconds:g} s"
            )
        if self._commit.done():
            self._wait_for_commit()

    def _wait_for_commit(self) -> None:
        """Let the running commit end; on failure abort and rewind to what it covered."""
        future, self._commit = self._commit, None
        if future is None:
            return
        try:
            future.result(timeout=self.settings.commit_deadline_seconds)
        except cf.TimeoutError:
            raise FatalKafkaError(
                f"a commit is stuck after {self.settings.commit_deadline_seconds:g} s"
            ) from None
        except Exception as exc:
            self._failed_commit(exc)

    def _failed_commit(self, exc: BaseException) -> None:
        from confluent_kafka import KafkaException

        error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
        if error is not None and error.fatal():
            raise FatalKafkaError(str(error)) from exc
        log.warning("commit failed; rewinding to the last committed offsets", exc_info=exc)
        self.metrics.aborts.labels(cause="commit_failed").inc()
        if self.exactly_once:
            # The failed transaction, and the one after it: its offsets follow the failed ones.
            self._abort(self._committing)
            if self._open:
                self._abort()
        # Everything since the failed commit's first offsets is redone, later batches too.
        for tp, offset in (*self._committing_from.items(), *self._first.items()):
            self._rewind_to(tp, offset)
        self._committing_from, self._next, self._first = {}, {}, {}
        raise DependencyError(f"commit failed: {exc}") from exc

    def _rewind_to(self, tp: TopicPartition, offset: int) -> None:
        self._pending_rewind[tp] = min(offset, self._pending_rewind.get(tp, offset))

    def _abort(self, producer: Any = None) -> None:
        """Abort the open transaction (of ``producer``, a committing one, when given)."""
        from confluent_kafka import KafkaException

        try:
            (producer or self.producer).abort_transaction(30)
        except KafkaException as exc:
            error = exc.args[0]
            if error.fatal():
                raise FatalKafkaError(str(error)) from exc
            log.warning("abort: %s", error)
        if producer is None:
            self._open = False

    def _seek(self, offsets: Mapping[TopicPartition, int]) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka import TopicPartition as KafkaTopicPartition

        for (topic, partition), offset in offsets.items():
            # A partition no longer ours is skipped: its new owner starts from the commit.
            with contextlib.suppress(KafkaException):
                self.consumer.seek(KafkaTopicPartition(topic, partition, offset))

    def _rewind_after(self, messages: Sequence[Message]) -> None:
        """A batch failed: commit the finished batches before it (they are whole), then
        consume again from the first event that is not committed."""
        for message in messages:
            self._rewind_to((message.topic, message.partition), message.offset)
        if self.exactly_once and self._open and (self._partial or not self._next):
            # Part of the failed batch is in the transaction: none of it may become visible,
            # so the finished batches before it are redone too.
            for tp, offset in self._first.items():
                self._rewind_to(tp, offset)
            self._next, self._first = {}, {}
            self._abort()
        self._partial = False
        # A failed commit adds what it covered to the rewind.
        with contextlib.suppress(DependencyError):
            self._finish()
        rewind, self._pending_rewind = self._pending_rewind, {}
        self._seek(rewind)

    def _finish(self) -> None:
        """Commit whatever is open, synchronously (before a stop, a revoke, a rewind)."""
        self._wait_for_commit()
        if not self._next:
            if self.exactly_once and self._open:
                self._abort()
            return
        self._opened_at = 0.0
        self._commit_if_due()
        self._wait_for_commit()

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
        try:
            self._finish()
        except DependencyError as exc:
            log.warning("commit on revoke failed; the new owner redoes it", exc_info=exc)
        self._pending_rewind = {}
        self._seek(kept)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        """Partitions lost without a revoke (session timed out): this worker may be a zombie,
        so nothing of the open transaction may become visible."""
        log.warning("lost %s", [f"{p.topic}/{p.partition}" for p in partitions])
        self._dropped_in_flight()
        with contextlib.suppress(DependencyError):
            self._wait_for_commit()
        if self.exactly_once and self._open:
            self._abort()
        self._next, self._first = {}, {}
