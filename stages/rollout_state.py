"""A model's rollout state, and the stream workers' counts, on a compacted Kafka topic.

One record per model (key: the model's name) says which version is stable, which is the
candidate, and the candidate's share of the stream plane's events (:class:`RolloutState`); the
canary controller (:mod:`rtflow.stages.builtin.canary`) writes it, every stream worker that
calls the model watches it (:class:`TopicWatch`). Beside them, under ``stats/<model>/<worker>``,
each worker publishes its cumulative per-version counts about once a second
(:class:`VersionStats`), so the controller reads the stream plane's view of the candidate with
no Prometheus and no pod discovery.

**Why a Kafka topic and not a ConfigMap.** The stream workers already depend on the broker; a
rollback reaches every worker within milliseconds, where a mounted ConfigMap waits for the
kubelet's sync (about a minute) and a watch on the API server would need RBAC in every worker;
it works the same in ``rtflow run --local`` and on a cluster. The topic is compacted, so it
holds the last record of each key forever and a worker that starts reads the current state by
reading the topic from its beginning.

**Counters like Prometheus'.** A worker's counts are cumulative since it started; the
controller takes the difference of two snapshots (:func:`stats_delta`) and treats a count that
went down as a restarted worker, whose new count is then all new, as Prometheus' ``rate()``.
"""

from __future__ import annotations

import bisect
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

__all__ = [
    "PHASES",
    "RolloutState",
    "TopicWatch",
    "VersionStats",
    "ensure_topic",
    "p99_ms",
    "read_topic",
    "stats_delta",
    "stats_key",
    "write_record",
    "write_state",
]

Phase = Literal["stable", "canary", "promoted", "rolled-back"]
PHASES: Final = ("stable", "canary", "promoted", "rolled-back")
STATS_PREFIX: Final = "stats/"
LATENCY_BOUNDS: Final = (
    0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5,
    1.0, 2.5,
)  # fmt: skip
"""Upper bounds (seconds) of the per-version latency histogram, the stream metrics' buckets."""


@dataclass(frozen=True)
class RolloutState:
    """Where a model's rollout stands; the record under the model's name."""

    model: str
    stable: int
    candidate: int | None = None
    share_percent: int = 0
    phase: Phase = "stable"
    step: int = 0
    reason: str = ""
    at: float = 0.0
    finish: str = ""
    """After a promotion: what to change in Git to finish it (the declaration still names the
    old stable version, which the workflow plane calls and a restarted Triton loads)."""

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | Mapping[str, Any]) -> RolloutState:
        value = json.loads(data) if isinstance(data, bytes) else dict(data)
        phase = value.get("phase", "stable")
        if phase not in PHASES:
            raise ValueError(f"rollout phase {phase!r} is not one of {PHASES}")
        candidate = value.get("candidate")
        return cls(
            model=str(value["model"]),
            stable=int(value["stable"]),
            candidate=None if candidate is None else int(candidate),
            share_percent=int(value.get("share_percent", 0)),
            phase=phase,
            step=int(value.get("step", 0)),
            reason=str(value.get("reason", "")),
            at=float(value.get("at", 0.0)),
            finish=str(value.get("finish", "")),
        )


@dataclass
class VersionStats:
    """One version's cumulative counts in one worker: rows answered, rows failed, and the
    latency histogram of its requests (cumulative bucket counts, Prometheus' ``le``)."""

    rows: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS) + 1))
    seconds: float = 0.0

    def observe(self, rows: int, errors: int, seconds: float) -> None:
        """A request of ``rows`` rows, ``errors`` of them failed, that took ``seconds``."""
        self.rows += rows
        self.errors += errors
        self.seconds += seconds
        first = bisect.bisect_left(LATENCY_BOUNDS, seconds)
        for index in range(first, len(self.buckets)):
            self.buckets[index] += 1

    def as_json(self) -> dict[str, Any]:
        return {"rows": self.rows, "errors": self.errors, "buckets": list(self.buckets),
                "seconds": self.seconds}  # fmt: skip

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> VersionStats:
        return cls(
            int(value.get("rows", 0)),
            int(value.get("errors", 0)),
            [int(c) for c in value.get("buckets", [0] * (len(LATENCY_BOUNDS) + 1))],
            float(value.get("seconds", 0.0)),
        )


def stats_key(model: str, worker: str) -> str:
    return f"{STATS_PREFIX}{model}/{worker}"


def _version_delta(before: VersionStats | None, after: VersionStats) -> VersionStats:
    if before is None:
        return after
    went_down = (
        after.rows < before.rows
        or after.errors < before.errors
        or any(a < b for a, b in zip(after.buckets, before.buckets, strict=False))
    )
    if went_down:  # the worker restarted: everything it counted is new
        return after
    return VersionStats(
        after.rows - before.rows,
        after.errors - before.errors,
        [a - b for a, b in zip(after.buckets, before.buckets, strict=False)],
        max(0.0, after.seconds - before.seconds),
    )


def stats_delta(
    before: Mapping[str, Mapping[str, Any]], after: Mapping[str, Mapping[str, Any]], version: int
) -> VersionStats:
    """What every worker counted for ``version`` between two snapshots of the stats records
    (``{worker key: record}``), summed; a worker whose count went down restarted in between
    (its count since then is all new), a worker first seen in ``after`` started in between."""
    total = VersionStats()
    wanted = str(version)
    for key, record in after.items():
        now = record.get("versions", {}).get(wanted)
        if now is None:
            continue
        then = before.get(key, {}).get("versions", {}).get(wanted)
        delta = _version_delta(
            None if then is None else VersionStats.from_json(then), VersionStats.from_json(now)
        )
        total.rows += delta.rows
        total.errors += delta.errors
        total.seconds += delta.seconds
        total.buckets = [a + b for a, b in zip(total.buckets, delta.buckets, strict=False)]
    return total


def p99_ms(stats: VersionStats) -> float | None:
    """The 99th percentile of the requests' latency in ms, interpolated in its bucket as
    Prometheus' ``histogram_quantile`` does; None without requests. Past the last bound it is
    that bound (the histogram knows no more)."""
    count = stats.buckets[-1]
    if count <= 0:
        return None
    rank = 0.99 * count
    index = next(i for i, c in enumerate(stats.buckets) if c >= rank)
    if index >= len(LATENCY_BOUNDS):
        return LATENCY_BOUNDS[-1] * 1000.0
    lower = LATENCY_BOUNDS[index - 1] if index else 0.0
    below = stats.buckets[index - 1] if index else 0
    inside = stats.buckets[index] - below
    fraction = (rank - below) / inside if inside else 1.0
    return (lower + (LATENCY_BOUNDS[index] - lower) * fraction) * 1000.0


# -- the topic -------------------------------------------------------------------------------------


def ensure_topic(brokers: str, topic: str, config: Mapping[str, Any] | None = None) -> None:
    """Create the compacted state topic if it is not there (one partition: the records are
    few, and one partition keeps a model's records in the order they were written)."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

    admin = AdminClient({"bootstrap.servers": brokers, **(config or {})})
    if topic in admin.list_topics(timeout=10).topics:
        return
    wanted = NewTopic(topic, num_partitions=1, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([wanted], request_timeout=15).values():
        try:
            future.result(20)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def write_record(
    brokers: str, topic: str, key: str, value: bytes, config: Mapping[str, Any] | None = None
) -> None:
    """One record, acknowledged by every in-sync replica before this returns."""
    from rtflow.stages.kafka_io import producer

    producer_ = producer(brokers, **dict(config or {}))
    failed: list[Any] = []
    producer_.produce(
        topic, value=value, key=key.encode(), on_delivery=lambda err, _m: failed.append(err)
    )
    left = producer_.flush(30)
    if left or not failed or failed[0] is not None:
        raise ConnectionError(f"the rollout record {key!r} did not reach {topic}: {failed or left}")


def write_state(
    brokers: str, topic: str, state: RolloutState, config: Mapping[str, Any] | None = None
) -> None:
    """The model's state, on a topic created compacted when it is not there yet (a broker
    that auto-creates topics would make it with the delete policy, losing states to
    retention)."""
    ensure_topic(brokers, topic, config)
    write_record(brokers, topic, state.model, state.to_json(), config)


def _assigned(consumer: Any, topic: str) -> list[Any]:
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    metadata = consumer.list_topics(topic, timeout=10).topics[topic]
    if metadata.error is not None:
        raise ConnectionError(f"topic {topic}: {metadata.error}")
    partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in sorted(metadata.partitions)]
    consumer.assign(partitions)
    return partitions


def _consumer(brokers: str, config: Mapping[str, Any] | None) -> Any:
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "rtflow-rollout-readers",  # never joined: partitions are assigned
            "enable.auto.commit": False,
            "enable.partition.eof": False,
            **(config or {}),
        }
    )


def read_topic(
    brokers: str, topic: str, config: Mapping[str, Any] | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """Every key's last value (JSON), read from the beginning to the end of the topic as it
    is now; nothing when there is no such topic yet (no rollout has written to it)."""
    from confluent_kafka import KafkaError

    consumer = _consumer(brokers, config)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None and metadata.error.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError._UNKNOWN_TOPIC,
        ):
            return {}
        partitions = _assigned(consumer, topic)
        ends = {}
        for p in partitions:
            low, high = consumer.get_watermark_offsets(p, timeout=10)
            if high > low:
                ends[p.partition] = high
        values: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout:g} s")
            message = consumer.poll(0.5)
            if message is None or message.error() is not None:
                continue
            key = (message.key() or b"").decode()
            if message.value() is None:
                values.pop(key, None)  # a tombstone
            else:
                values[key] = json.loads(message.value())
            if message.offset() + 1 >= ends.get(message.partition(), 0):
                ends.pop(message.partition(), None)
        return values
    finally:
        consumer.close()


class TopicWatch:
    """A thread following the state topic from its beginning, calling ``on_record(key, value)``
    for every record (value None for a tombstone), until :meth:`close`."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        on_record: Callable[[str, Any], None],
        config: Mapping[str, Any] | None = None,
        every: Sequence[tuple[float, Callable[[], None]]] = (),
    ) -> None:
        """``every``: (seconds, function) pairs the thread also calls that often (a worker's
        stats records)."""
        self.brokers, self.topic, self.on_record = brokers, topic, on_record
        self.config = dict(config or {})
        self.every = list(every)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtflow-watch-{topic}", daemon=True)

    def start(self) -> TopicWatch:
        ensure_topic(self.brokers, self.topic, self.config)
        self._thread.start()
        return self

    def _run(self) -> None:
        import logging

        log = logging.getLogger("rtflow.rollout")
        consumer = _consumer(self.brokers, self.config)
        due = [time.monotonic() + seconds for seconds, _ in self.every]
        try:
            _assigned(consumer, self.topic)
            while not self._stop.is_set():
                message = consumer.poll(0.1)
                if message is not None and message.error() is None:
                    value = message.value()
                    try:
                        self.on_record(
                            (message.key() or b"").decode(),
                            None if value is None else json.loads(value),
                        )
                    except Exception:  # one bad record must not stop the watch
                        log.exception("a rollout record could not be read")
                now = time.monotonic()
                for index, (seconds, function) in enumerate(self.every):
                    if now >= due[index]:
                        due[index] = now + seconds
                        try:
                            function()
                        except Exception:
                            log.exception("a periodic rollout task failed")
        finally:
            consumer.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
