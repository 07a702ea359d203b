"""Kafka in and out for local runs: a consumer that commits only what is safely written, and an
idempotent producer. confluent-kafka is imported when used, so runs without Kafka need none."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from rtflow.stages.events import Event

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


class KafkaSink:
    """Each record as one JSON message; ``key`` names the record field used as message key."""

    def __init__(self, topic: str, brokers: str, *, key: str | None = "event") -> None:
        self.topic = topic
        self.key = key
        self.errors: list[str] = []
        self._producer = producer(brokers)
        self._lock = threading.Lock()

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def write(self, record: Mapping[str, Any]) -> None:
        value = json.dumps(record, sort_keys=True, default=str).encode()
        key = str(record.get(self.key, "")).encode() if self.key else None
        with self._lock:
            while True:
                try:
                    self._producer.produce(
                        self.topic, value=value, key=key, on_delivery=self._delivered
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
    """Events from a topic. Offsets are committed only for events whose result (or dead letter)
    was flushed: ``before_commit`` is called first, so a crash re-reads, never loses.

    Stops after ``max_events`` messages, or once no message came for ``idle_timeout`` seconds
    (None: run until interrupted).
    """

    def __init__(
        self,
        topic: str,
        brokers: str,
        *,
        group: str,
        max_events: int | None = None,
        idle_timeout: float | None = None,
        commit_interval: float = 1.0,
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
                **(config or {}),
            }
        )
        self._lock = threading.Lock()
        # per partition: offsets read and not yet done, and those done
        self._open: dict[int, set[int]] = {}
        self._done: dict[int, set[int]] = {}
        self._committed: dict[int, int] = {}
        self.total: int | None = max_events

    def _ack(self, partition: int, offset: int) -> None:
        with self._lock:
            self._done.setdefault(partition, set()).add(offset)

    def _commit(self, *, final: bool = False) -> None:
        from confluent_kafka import TopicPartition

        self.before_commit()
        positions: list[TopicPartition] = []
        with self._lock:
            for partition, done in self._done.items():
                still_open = self._open.get(partition, set())
                finished = done & still_open
                still_open -= finished
                done -= finished
                # commit up to the first offset still in flight (or past the last one read)
                low = min(still_open) if still_open else None
                high = max(finished) + 1 if finished else None
                target = low if low is not None else high
                if target is not None and target > self._committed.get(partition, -1):
                    self._committed[partition] = target
                    positions.append(TopicPartition(self.topic, partition, target))
        if positions and final:
            self._consumer.commit(offsets=positions, asynchronous=False)
        elif positions:
            self._consumer.commit(offsets=positions, asynchronous=True)

    def __iter__(self) -> Iterator[Event]:
        self._consumer.subscribe([self.topic])
        count = 0
        last_message = time.monotonic()
        last_commit = time.monotonic()
        while self.max_events is None or count < self.max_events:
            msg = self._consumer.poll(0.2)
            now = time.monotonic()
            if now - last_commit >= self.commit_interval:
                self._commit()
                last_commit = now
            if msg is None:
                if self.idle_timeout is not None and now - last_message > self.idle_timeout:
                    return
                continue
            error = msg.error()
            if error is not None:
                if error.fatal():
                    raise RuntimeError(f"Kafka consumer: {error}")
                continue
            last_message = now
            count += 1
            partition, offset = msg.partition() or 0, msg.offset() or 0
            with self._lock:
                self._open.setdefault(partition, set()).add(offset)
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
            problem: str | None = None
            try:
                body: Any = json.loads(raw)
            except ValueError as exc:
                body, problem = _text(raw), f"the message is not JSON: {exc}"

            def ack(p: int = partition, o: int = offset) -> None:
                self._ack(p, o)

            yield Event(event_id, body, metadata, problem, ack)

    def close(self) -> None:
        try:
            self._commit(final=True)
        finally:
            self._consumer.close()


def _text(value: str | bytes | None) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else value.decode(errors="replace")
