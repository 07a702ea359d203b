"""Kafka in and out for local runs: a consumer that commits only what is safely written, and an
idempotent producer. confluent-kafka is imported when used, so runs without Kafka need none."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rtflow.stages import portable_json
from rtflow.stages.events import Event
from rtflow.stages.offsets import OffsetBook

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

PRODUCER_DEFAULTS: dict[str, str | int | bool] = {
    # Idempotence: the broker drops duplicates of a retried batch and keeps order per partition.
    "enable.idempotence": True,
    "acks": "all",
    # Keep retrying through a broker restart rather than dropping: a message only fails after
    # this long (the default is 300 s; local runs should say so sooner than that).
    "message.timeout.ms": 120_000,
    "linger.ms": 2,
}


def producer(brokers: str, **config: str | int | bool) -> Producer:
    from confluent_kafka import Producer

    return Producer({"bootstrap.servers": brokers, **PRODUCER_DEFAULTS, **config})


def topic_message_limit(brokers: str, topic: str, config: Mapping[str, Any] | None = None) -> int:
    """The largest record ``topic`` accepts: its ``max.message.bytes`` (the broker's default when
    it cannot be read), never more than a producer's default ``message.max.bytes``."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]  # not in its stubs' exports
        AdminClient,
        ConfigResource,
        ResourceType,
    )

    limit = PRODUCER_MESSAGE_MAX
    admin = AdminClient({"bootstrap.servers": brokers, **(config or {})})
    resource = ConfigResource(ResourceType.TOPIC, topic)
    try:
        entries = admin.describe_configs([resource], request_timeout=10)[resource].result(15)
        topic_limit = int(entries["max.message.bytes"].value)
    except Exception:  # no such topic yet (auto-created), no permission: the broker default
        topic_limit = BROKER_MESSAGE_MAX
    return min(limit, topic_limit)


#: librdkafka's default ``message.max.bytes`` and the broker's default ``max.message.bytes``.
PRODUCER_MESSAGE_MAX = 1_000_000
BROKER_MESSAGE_MAX = 1_048_588


class KafkaSink:
    """Each record as one JSON message; ``key`` names the record field used as message key.

    Records are sized against what the topic accepts (read from the broker once): a dead letter
    (``letters=True``) has its payload cut to fit and carries the reason and source in headers
    (:mod:`rtflow.stages.dead_letters`); a result that does not fit raises
    :class:`~rtflow.stages.dead_letters.RecordTooLarge` from :meth:`write`, before anything is
    sent, so the run dead-letters that event instead. The producer's ``message.max.bytes`` is the
    topic's limit, so no batch of small records can exceed it either.
    """

    def __init__(
        self, topic: str, brokers: str, *, key: str | None = "event", letters: bool = False
    ) -> None:
        self.topic = topic
        self.key = key
        self.letters = letters
        self.errors: list[str] = []
        self.limit = topic_message_limit(brokers, topic)
        self._producer = producer(brokers, **{"message.max.bytes": self.limit})
        self._lock = threading.Lock()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def write(self, record: Mapping[str, Any]) -> None:
        from rtflow.stages.dead_letters import encode_record, headers

        value = encode_record(record, self.limit)
        key = str(record.get(self.key, "")).encode() if self.key else None
        extra: list[tuple[str, str | bytes | None]] | None = None
        if self.letters:
            extra = list(headers(record))
        with self._lock:
            while True:
                try:
                    self._producer.produce(
                        self.topic,
                        value=value,
                        key=key,
                        headers=extra,
                        on_delivery=self._delivered,
                    )
                    break
                except BufferError:  # the local queue is full: serve callbacks, then again
                    self._producer.poll(0.1)
            self._producer.poll(0)

    def flush(self) -> None:
        with self._lock:
            remaining = self._producer.flush(120)
        if remaining:
            raise RuntimeError(f"{remaining} message(s) to {self.topic} not delivered in 120 s")
        if self.errors:
            raise RuntimeError(f"delivery to {self.topic} failed: {self.errors[0]}")

    def close(self) -> None:
        self.flush()


class KafkaSource:
    """Events from a topic. An offset is committed only once the event's result (or dead letter)
    is written and flushed, and counts as committed only once the broker confirmed it
    (:class:`~rtflow.stages.offsets.OffsetBook`): a crash re-reads, never loses, and re-reads
    only what was in flight.

    Commits are synchronous and happen as soon as a position moved (at most every
    ``commit_interval`` seconds), on the thread that iterates: the consumer must not be called
    while another thread is inside its ``poll`` (confluent-kafka 2.x blocks the second call
    until the poll returns), so :meth:`tick` is for that same thread to call while it waits to
    hand an event over. A commit first takes the positions, then calls ``before_commit`` (the
    run flushes its sinks there, so what was written before the positions were taken is
    delivered), then commits. Stops after ``max_events`` messages, once no message came for
    ``idle_timeout`` seconds (None: run until interrupted), or when :meth:`stop` is called.
    """

    def __init__(
        self,
        topic: str,
        brokers: str,
        *,
        group: str,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        commit_interval: float = 0.05,
        config: Mapping[str, str | int | bool] | None = None,
    ) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.max_events = max_events
        self.idle_timeout = idle_timeout
        self.commit_interval = commit_interval
        self.before_commit: Callable[[], None] = lambda: None
        self._consumer: Consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": group,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                # A run killed without leaving the group holds its partitions until its session
                # times out; the broker's minimum (6 s) lets a restart take over sooner than the
                # default 45 s.
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                **(config or {}),
            }
        )
        self.book = OffsetBook()
        self.total: int | None = max_events
        self.commit_error: str | None = None
        self._stop = threading.Event()
        self._last_commit = 0.0
        self.window: int | None = None
        """At most this many offsets read beyond the confirmed commit (None: no limit); the
        run sets it (see :mod:`rtflow.stages.offsets`)."""

    def stop(self) -> None:
        """Read no more messages: the iterator ends at its next poll (within 0.2 s)."""
        self._stop.set()

    def commit(self) -> bool:
        """Commit what is done now; True when the broker confirmed (or nothing was due).
        Only on the iterating thread, or once iteration is over."""
        from confluent_kafka import KafkaException, TopicPartition

        self._last_commit = time.monotonic()
        self.book.changed.clear()
        due = self.book.due()
        if not due:
            return True
        self.before_commit()  # what was written before ``due`` was taken is now delivered
        offsets = [TopicPartition(self.topic, p, o) for p, o in due.items()]
        try:
            answered = self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self.commit_error = str(exc)
            self.book.changed.set()  # try again at the next tick
            return False
        good = {tp.partition: tp.offset for tp in answered or offsets if tp.error is None}
        self.book.confirmed(good)
        self.commit_error = None if len(good) == len(due) else "a partition's commit failed"
        if len(good) != len(due):
            self.book.changed.set()
        return len(good) == len(due)

    def tick(self) -> None:
        """Commit if a position moved and ``commit_interval`` has passed (the iterating thread,
        between events)."""
        if self.book.changed.is_set() and (
            time.monotonic() - self._last_commit >= self.commit_interval
        ):
            self.commit()

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        with contextlib.suppress(Exception):
            self.commit()
        self.book.forget(tp.partition for tp in partitions)

    def __iter__(self) -> Iterator[Event]:
        self._consumer.subscribe([self.topic], on_revoke=self._on_revoke)
        count = 0
        last_message = time.monotonic()
        while (self.max_events is None or count < self.max_events) and not self._stop.is_set():
            self.tick()
            if self.window is not None and self.book.span() >= self.window:
                self._stop.wait(0.005)  # read no further until a commit is confirmed
                continue
            msg = self._consumer.poll(0.05 if self.book.in_flight() else 0.2)
            now = time.monotonic()
            if msg is None:
                if self.idle_timeout is not None and now - last_message > self.idle_timeout:
                    return
                continue
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise RuntimeError(f"Kafka consumer: {error}")
                continue
            if self._stop.is_set():
                return  # read, not handed over: not open, so a restart reads it again
            last_message = now
            count += 1
            partition, offset = msg.partition() or 0, msg.offset() or 0
            self.book.read(partition, offset)
            event_id = f"{self.topic}/{partition}/{offset}"
            headers: list[tuple[str, bytes | None]] = list(msg.headers() or [])  # type: ignore[arg-type]
            metadata = {
                "topic": self.topic,
                "partition": partition,
                "key": _text(msg.key()),
                "timestamp": str(msg.timestamp()[1]),
                "headers": {k: _text(v) for k, v in headers},
            }
            raw = msg.value() or b""
            body, problem = portable_json.parse(raw)
            source = {"topic": self.topic, "partition": partition, "offset": offset}

            def ack(p: int = partition, o: int = offset) -> None:
                self._ack(p, o)

            yield Event(event_id, body, metadata, problem, ack, raw, source)

    def _ack(self, partition: int, offset: int) -> None:
        self.book.done(partition, offset)

    def close(self) -> None:
        """Commit what is done (retrying a refused commit a few times), then leave the group.
        Call it once the iteration is over (no other thread in the consumer)."""
        try:
            for attempt in range(5):
                if self.commit():
                    break
                time.sleep(0.2 * (attempt + 1))
        finally:
            self._consumer.close()


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode(errors="replace")
