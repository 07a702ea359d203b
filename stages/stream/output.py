"""What a stream worker writes and commits: its producers, the open transaction, and the
commit that runs beside the worker's loop.

**Exactly-once** (EOS v2, KIP-447): a batch's records go into the open transaction, and every
``transaction_interval_ms`` the transaction commits together with the consumed offsets
(``send_offsets_to_transaction`` with the consumer's group metadata, so a worker that lost its
partitions in a rebalance is fenced and its writes are never visible).

**The commit overlaps the next batch, on a second producer.** ``commit_transaction`` blocks
for a broker round trip or two (about 2.5 ms here); a serial loop adds that to every event's
latency and takes it off the throughput. Here the commit runs on a helper thread (librdkafka
releases the GIL) while the worker consumes and runs the next batch. That batch goes into
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

**At-least-once**: one idempotent producer; the offsets are committed after the records are
delivered.

**Failures** never commit past an unprocessed event: :meth:`Output.failed` commits the open
transaction if it holds only finished batches, else aborts it, and says where to consume again
from. A fatal producer error (fenced by a newer instance with the same transactional id) is a
:class:`FatalKafkaError`.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from rtflow.ir import StreamPlane
from rtflow.stages.stream.metrics import StreamMetrics
from rtflow.stages.stream.plan import DependencyError, Message, Record
from rtflow.stages.stream.settings import FatalKafkaError, WorkerSettings

log = logging.getLogger("rtflow.stream")

TopicPartition = tuple[str, int]


class Output:
    """One worker's producers and transactions; the worker's consumer supplies the offsets'
    group metadata (exactly-once) or commits them (at-least-once)."""

    def __init__(
        self,
        stream: StreamPlane,
        settings: WorkerSettings,
        metrics: StreamMetrics,
        transactional_id: str,
        consumer: Any,
        common: Mapping[str, Any],
    ) -> None:
        self.stream = stream
        self.settings = settings
        self.metrics = metrics
        self.exactly_once = stream.guarantee == "exactly_once"
        self.consumer = consumer
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
        self._delivery_errors: list[str] = []
        # Exactly-once alternates two transactional producers (see the module's docstring);
        # at-least-once has one. ``producer`` is the one batches go into now.
        self._producers: list[Any] = []
        self._active = 0
        self._committing: Any = None  # the producer whose transaction the running commit ends
        self._flushed: threading.Event | None = None  # its records are acknowledged
        self._connect(transactional_id, common)

    @property
    def producer(self) -> Any:
        return self._producers[self._active]

    def _connect(self, transactional_id: str, common: Mapping[str, Any]) -> None:
        from confluent_kafka import Producer

        producer: dict[str, Any] = {
            **common,
            "client.id": f"{transactional_id}-producer",
            "enable.idempotence": True,
            "acks": "all",
            # Records of a transaction become visible only at its commit, which flushes them:
            # lingering a few ms costs nothing and saves the broker most produce requests.
            "linger.ms": max(1, min(5, self.stream.transaction_interval_ms // 2))
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
                    "client.id": f"{transactional_id}{suffix}-producer",
                    "transactional.id": f"{transactional_id}{suffix}",
                    "transaction.timeout.ms": self.settings.transaction_timeout_ms,
                }
            )
            transactional.init_transactions(30)
            self._producers.append(transactional)

    def produce(self, records: Sequence[Record], messages: Sequence[Message]) -> None:
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

    def commit_if_due(self) -> None:
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
        self.wait_for_commit()
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
            self.wait_for_commit()

    def wait_for_commit(self) -> None:
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

    def failed(self, messages: Sequence[Message]) -> dict[TopicPartition, int]:
        """A batch failed (``messages``, and any started after it): commit the finished
        batches before it (they are whole) and abort what is partial; the offsets to consume
        again from, per partition."""
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
            self.finish()
        rewind, self._pending_rewind = self._pending_rewind, {}
        return rewind

    def revoked(self) -> None:
        """Partitions are leaving: commit what is finished; their new owner starts there."""
        try:
            self.finish()
        except DependencyError as exc:
            log.warning("commit on revoke failed; the new owner redoes it", exc_info=exc)
        self._pending_rewind = {}

    def lost(self) -> None:
        """Partitions lost without a revoke (session timed out): this worker may be a zombie,
        so nothing of the open transaction may become visible."""
        with contextlib.suppress(DependencyError):
            self.wait_for_commit()
        if self.exactly_once and self._open:
            self._abort()
        self._next, self._first = {}, {}

    def close(self, *, stuck: bool) -> None:
        """Stop the commit threads; a stuck one (``stuck``) is left behind, not joined. Then
        let the producers go: librdkafka destroys a producer (its threads and connections)
        when the last reference does, which an in-process worker (tests, ``rtflow run
        --local``'s threads) would otherwise keep until the process ends."""
        self._committer.shutdown(wait=not stuck)
        self._flusher.shutdown(wait=not stuck)
        if not stuck:
            self._producers = []
            self._committing = None

    def finish(self) -> None:
        """Commit whatever is open, synchronously (before a stop, a revoke, a rewind)."""
        self.wait_for_commit()
        if not self._next:
            if self.exactly_once and self._open:
                self._abort()
            return
        self._opened_at = 0.0
        self.commit_if_due()
        self.wait_for_commit()
