"""``rtflow.drift`` in a stream worker: a tumbling window of the watched value, its PSI, and a
record per window, produced exactly once.

**The window** is per worker (not per partition): ``window`` values, counted into the
reference's bins, from the events the worker processes (after the trigger's filter, not
dead-lettered, under the watch's ``when``). A value that is missing (the event lacks the field,
an inference answer lacks the tensor) or not a finite number is not counted; the counter
``rtflow_stream_drift_values_total{stage,outcome="missing"}`` says how many. When the window
is full its PSI is computed (:func:`rtflow.stages.builtin.drift.psi`), the gauge
``rtflow_stream_drift{stage,statistic="psi"}`` set, and a record published to the drift topic;
then the window starts empty.

**Every window is published; ``crossed`` is true only on the window that goes from at most
the threshold to above it** (per worker). The dashboard sees the statistic's course (``value``,
``above``), while the retraining trigger (``rtflow.on_drift``: a data filter on
``body.crossed == true``) starts one run per crossing, not one per window while the drift
lasts; the next crossing needs a window back at or below the threshold first.

**Exactly once.** The drift record goes into the Kafka transaction of the batch that closed
the window, so it becomes visible exactly when that batch's offsets are committed. The window
itself spans transactions, so it is kept the way Kafka Streams keeps a state store: every batch
that changed it writes the window's state (counts per bin, values, missing, above) to the
compacted topic ``<pipeline>-drift-state`` (key ``<transactional id>/<watch>``) inside the same
transaction. A worker that starts, or that rewinds (a failed batch or commit, a revoke, lost
partitions), reads its keys back (``read_committed``) before its next batch: the state of the
last committed batch, consistent with the offsets it resumes from. An event is then counted in
exactly one committed window and a window's record is published once, whatever crashed.
A worker id that never comes back (scaled down) leaves its last partial window unfinished.
With ``guarantee="at_least_once"`` the records and the state are at-least-once too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from rtflow import ir
from rtflow.stages.builtin.drift import as_number, bin_of, psi
from rtflow.stages.runtime import BadInput
from rtflow.stages.stream.batch import DependencyError, EventState, Message, Record
from rtflow.stages.stream.steps import Step, value_getter
from rtflow.stream_layout import DRIFT_FUNCTIONS, drift_state_topic, drift_topic

log = logging.getLogger("rtflow.stream")

RESTORE_SECONDS = 30.0
"""How long reading the state back may take before the batch is retried (an open transaction
of another worker holds ``read_committed`` readers until it ends)."""


@dataclass
class Closed:
    """A full window: its statistic and whether it crossed the threshold."""

    value: float
    above: bool
    crossed: bool
    events: int
    missing: int


class DriftWindow:
    """One watch's tumbling window: counts per bin, and whether the last window was above."""

    def __init__(
        self, edges: Sequence[float], expected: Sequence[float], size: int, threshold: float
    ) -> None:
        self.edges = list(edges)
        self.expected = list(expected)
        self.size = size
        self.threshold = threshold
        self.counts = [0] * len(self.expected)
        self.events = 0
        self.missing = 0
        self.above = False

    def add(self, number: float) -> Closed | None:
        """Count one value; the closed window when it was the last one the window held."""
        self.counts[bin_of(self.edges, number)] += 1
        self.events += 1
        if self.events < self.size:
            return None
        value = psi(self.counts, self.expected)
        above = value > self.threshold
        closed = Closed(value, above, above and not self.above, self.events, self.missing)
        self.above = above
        self.counts = [0] * len(self.expected)
        self.events = self.missing = 0
        return closed

    def state(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "events": self.events,
            "missing": self.missing,
            "above": self.above,
        }

    def load(self, state: Mapping[str, Any] | None) -> None:
        """The state a committed batch left (None: a fresh window)."""
        counts = (state or {}).get("counts")
        if not isinstance(counts, list) or len(counts) != len(self.expected):
            counts = [0] * len(self.expected)  # fresh, or the reference changed: start over
            state = None
        self.counts = [int(c) for c in counts]
        self.events = int((state or {}).get("events", 0))
        self.missing = int((state or {}).get("missing", 0))
        self.above = bool((state or {}).get("above", False))


def _constant(task: ir.Task, name: str) -> Any:
    value = dict(task.arguments)[name]
    assert isinstance(value, ir.Constant), f"{task.name}: {name} is a constant (rtflow.drift)"
    return value.text if name in ("name", "statistic", "topic") else json.loads(value.text)


class DriftStep(Step):
    """A drift watch on the hot path. :meth:`run` does nothing: the plan calls :meth:`observe`
    once the batch's steps are done, so that only events still alive are counted."""

    def __post_init__(self) -> None:
        super().__post_init__()
        task = self.task
        self.name = str(_constant(task, "name"))
        self.statistic = str(_constant(task, "statistic"))
        self.threshold = float(_constant(task, "threshold"))
        self.given_topic = str(_constant(task, "topic"))
        self.window = DriftWindow(
            _constant(task, "edges"),
            _constant(task, "proportions"),
            int(_constant(task, "window")),
            self.threshold,
        )
        self.many = self.stage.function == DRIFT_FUNCTIONS[1]
        self.value = value_getter(dict(task.arguments)["value"])
        self.topic = drift_topic("", self.given_topic)  # bind() names the pipeline's
        self.state_topic = ""
        self.key = self.name.encode()
        self.worker = ""
        self.pipeline = ""
        self._gauge: Any = None
        self._values: Any = None
        self._windows: Any = None

    def bind(
        self, pipeline: str, worker: str, transactional_id: str, registry: CollectorRegistry
    ) -> None:
        self.pipeline = pipeline
        self.worker = worker
        self.topic = drift_topic(pipeline, self.given_topic)
        self.state_topic = drift_state_topic(pipeline)
        self.key = f"{transactional_id}/{self.name}".encode()
        self._gauge, self._values, self._windows = _metrics(registry)

    def run(self, events: Sequence[EventState]) -> None:
        return  # see observe()

    def _numbers(self, event: EventState) -> tuple[list[float], int]:
        """The event's values as numbers, and how many were missing or not numbers."""
        try:
            raw = self.value(event)
        except (BadInput, KeyError):
            return [], 1
        items: Iterable[Any] = raw if self.many and isinstance(raw, list | tuple) else [raw]
        if self.many and not isinstance(raw, list | tuple):
            return [], 1
        numbers = [as_number(v) for v in items]
        found = [n for n in numbers if n is not None]
        return found, len(numbers) - len(found)

    def observe(self, events: Sequence[EventState]) -> list[Record]:
        """Count the batch's live events; the drift record of each window they closed, then
        the window's state (when it changed), for the batch's transaction."""
        assert self.state_topic, "attach() binds a drift step to its worker first"
        records: list[Record] = []
        window = self.window
        counted = missing = 0
        for event in events:
            if event.dead is not None or not self.ready(event):
                continue
            numbers, lacking = self._numbers(event)
            window.missing += lacking
            missing += lacking
            for number in numbers:
                counted += 1
                closed = window.add(number)
                if closed is not None:
                    records.append(self._record(closed, event.message))
        if self._values is not None:
            if counted:
                self._values.labels(stage=self.name, outcome="counted").inc(counted)
            if missing:
                self._values.labels(stage=self.name, outcome="missing").inc(missing)
        if counted or missing:
            state = json.dumps(window.state(), separators=(",", ":")).encode()
            records.append(Record(self.state_topic, state, self.key))
        return records

    def _record(self, closed: Closed, message: Message) -> Record:
        if self._gauge is not None:
            self._gauge.labels(stage=self.name, statistic=self.statistic).set(closed.value)
            self._windows.labels(stage=self.name, crossed=str(closed.crossed).lower()).inc()
        value = {
            "drift": self.name,
            "pipeline": self.pipeline,
            "statistic": self.statistic,
            "value": round(closed.value, 6),
            "threshold": self.threshold,
            "above": closed.above,
            "crossed": closed.crossed,
            "window_events": closed.events,
            "missing": closed.missing,
            "window_end": {
                "topic": message.topic,
                "partition": message.partition,
                "offset": message.offset,
            },
            "worker": self.worker,
        }
        if closed.crossed:
            log.warning("drift crossed its threshold", extra={k: value[k] for k in
                        ("drift", "value", "threshold", "worker")})  # fmt: skip
        body = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        return Record(self.topic, body, self.name.encode())


def _metrics(registry: CollectorRegistry) -> tuple[Any, Any, Any]:
    """The drift metrics in a worker's registry, made once (several watches share them; kept
    on the registry itself, so a registry made later never finds another's)."""
    made: tuple[Any, Any, Any] | None = getattr(registry, "_rtflow_drift", None)
    if made is None:
        made = (
            Gauge("rtflow_stream_drift", "The last full window's drift statistic",
                  ["stage", "statistic"], registry=registry),
            Counter("rtflow_stream_drift_values", "Watched values counted into a window, or "
                    "missing / not a number (not counted)", ["stage", "outcome"],
                    registry=registry),
            Counter("rtflow_stream_drift_windows", "Full windows, by whether they crossed",
                    ["stage", "crossed"], registry=registry),
        )  # fmt: skip
        setattr(registry, "_rtflow_drift", made)  # noqa: B010 (a private attribute of ours)
    return made


class DriftWatches:
    """A worker's drift steps and their state: read back before the first batch and after
    every rewind (:meth:`stale`), so a window only holds committed batches."""

    def __init__(
        self,
        steps: Sequence[DriftStep],
        brokers: str,
        client_config: Mapping[str, Any],
    ) -> None:
        self.steps = list(steps)
        self.brokers = brokers
        self.client_config = dict(client_config)
        self._stale = True

    def stale(self) -> None:
        self._stale = True

    def restore_if_stale(self) -> None:
        """Load each window from the last committed state (DependencyError: retry later)."""
        if not self._stale or not self.steps:
            return
        topic = self.steps[0].state_topic
        states = read_states(self.brokers, self.client_config, topic, [s.key for s in self.steps])
        for step in self.steps:
            state = states.get(step.key)
            step.window.load(state)
            log.info("drift window restored", extra={"drift": step.name,
                     "events": step.window.events, "above": step.window.above})  # fmt: skip
        self._stale = False


def attach(plan: Any, settings: Any, metrics: Any, transactional_id: str) -> DriftWatches:
    """Bind the plan's drift steps to this worker (the worker's hook, one call)."""
    steps = [s for s in plan.steps if isinstance(s, DriftStep)]
    for step in steps:
        step.bind(plan.pipeline.name, settings.worker_id, transactional_id, metrics.registry)
    return DriftWatches(steps, settings.brokers, settings.client_config)


def read_states(
    brokers: str,
    config: Mapping[str, Any],
    topic: str,
    keys: Sequence[bytes],
    timeout: float = RESTORE_SECONDS,
) -> dict[bytes, dict[str, Any]]:
    """The last committed value of each of ``keys`` in ``topic`` (read to its end)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException
    from confluent_kafka import TopicPartition as KafkaTopicPartition

    wanted = set(keys)
    settings = {
        **config,
        "bootstrap.servers": brokers,
        "group.id": f"rtflow-drift-restore-{topic}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    }
    # The end to read to is the high watermark, which only a read_uncommitted client is told: a
    # read_committed one gets the last stable offset, which another worker's open transaction
    # holds back, possibly before this worker's own last committed state.
    ends: dict[int, int] = {}
    probe = Consumer({**settings, "isolation.level": "read_uncommitted"})
    try:
        described = probe.list_topics(topic, timeout=10).topics.get(topic)
        if described is None or described.error is not None:
            raise DependencyError(f"drift state topic {topic!r}: {described and described.error}")
        for partition in sorted(described.partitions):
            low, high = probe.get_watermark_offsets(
                KafkaTopicPartition(topic, partition), timeout=10
            )
            if high > low:
                ends[partition] = high
    except KafkaException as exc:
        raise DependencyError(f"drift state topic {topic!r}: {exc}") from exc
    finally:
        probe.close()
    consumer = Consumer({**settings, "isolation.level": "read_committed"})
    try:
        consumer.assign([KafkaTopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        found: dict[bytes, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout
        while ends:
            if time.monotonic() > deadline:
                raise DependencyError(f"drift state topic {topic!r} not read to its end")
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                error = message.error() if message is not None else None
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    raise DependencyError(f"drift state topic {topic!r}: {error}")
                # At a partition's end, or idle: a partition is read once the position is past
                # the end seen at the start (an open transaction of another worker holds a
                # read_committed reader before it until it ends; then the position moves on).
                positions = consumer.position([KafkaTopicPartition(topic, p) for p in ends])
                for position in positions:
                    if position.offset >= ends[position.partition]:
                        del ends[position.partition]
                continue
            key = message.key()
            if key in wanted:
                found[key] = json.loads(message.value() or b"{}")
        return found
    finally:
        consumer.close()
