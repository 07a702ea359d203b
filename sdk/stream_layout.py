"""The stream plane's layout, shared by its runtime and its manifests: the fused groups of the
hot path, the topic and the consumer group of each, and every topic the plane reads or writes.

One function per fact, so that what a worker consumes and what ``rtflow compile`` declares
(its Deployment, its KafkaTopic, its KEDA scaler's consumer group) cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass

from rtflow import ir

KAFKA_PUBLISH_FUNCTION = "rtflow.stages.builtin.kafka_publish:kafka_publish"
DRIFT_FUNCTIONS = (
    "rtflow.stages.builtin.drift:drift_watch",
    "rtflow.stages.builtin.drift:drift_watch_values",
)
"""The built-in stages ``rtflow.drift`` records: a window in the worker, not a call."""


def hop_topic(pipeline: str, task: str) -> str:
    """The topic between two fused groups, named after the stage that reads it."""
    return f"{pipeline}-hop-{task}"


def groups_of(stream: ir.StreamPlane) -> list[tuple[str, ...]]:
    """The hot path cut at each hop: one fused group of tasks per worker kind."""
    groups: list[list[str]] = [[]]
    for task in stream.hot_tasks:
        if task in stream.hops:
            groups.append([])
        groups[-1].append(task)
    return [tuple(g) for g in groups]


@dataclass(frozen=True)
class Group:
    """One fused group: the tasks one kind of worker runs, what it reads and as whom."""

    index: int
    tasks: tuple[str, ...]
    input_topic: str
    consumer_group: str
    next_topic: str | None

    @property
    def first(self) -> bool:
        return self.index == 0


def groups(pipeline: ir.Pipeline) -> list[Group]:
    stream = pipeline.stream
    assert stream is not None
    cut = groups_of(stream)
    found = []
    for index, tasks in enumerate(cut):
        first = index == 0
        found.append(
            Group(
                index=index,
                tasks=tasks,
                input_topic=stream.source_topic if first else hop_topic(pipeline.name, tasks[0]),
                consumer_group=stream.consumer_group
                if first
                else f"{stream.consumer_group}-{tasks[0]}",
                next_topic=hop_topic(pipeline.name, cut[index + 1][0])
                if index + 1 < len(cut)
                else None,
            )
        )
    return found


def worker_name(pipeline: str, group: Group) -> str:
    """The Deployment of a group's workers: ``<pipeline>-stream``, ``-stream-<n>`` after a hop."""
    return f"{pipeline}-stream" if group.first else f"{pipeline}-stream-{group.index}"


def stream_worker_names(pipeline: ir.Pipeline) -> tuple[str, ...]:
    return tuple(worker_name(pipeline.name, g) for g in groups(pipeline))


def publish_topics(pipeline: ir.Pipeline) -> list[str]:
    """The topics the hot path's publish stages write (constants: stream_ir refuses others)."""
    stream = pipeline.stream
    assert stream is not None
    topics = set()
    for name in stream.hot_tasks:
        task = pipeline.task(name)
        if pipeline.stage(task.stage).function == KAFKA_PUBLISH_FUNCTION:
            topic = dict(task.arguments)["topic"]
            assert isinstance(topic, ir.Constant)
            topics.add(topic.text)
    return sorted(topics)


def drift_topic(pipeline: str, given: str) -> str:
    """The topic a drift watch publishes to: the one given, else ``<pipeline>-drift``."""
    return given or f"{pipeline}-drift"


def drift_state_topic(pipeline: str) -> str:
    """Where the workers keep their drift windows between transactions (compacted, a key per
    worker and watch; rtflow.stages.stream.drift)."""
    return f"{pipeline}-drift-state"


@dataclass(frozen=True)
class DriftWatch:
    """A drift watch of the hot path, as its task's constants say (rtflow.drift)."""

    name: str
    threshold: float
    topic: str


def drift_watches(pipeline: ir.Pipeline) -> list[DriftWatch]:
    stream = pipeline.stream
    assert stream is not None
    found = []
    for name in stream.hot_tasks:
        task = pipeline.task(name)
        if pipeline.stage(task.stage).function in DRIFT_FUNCTIONS:
            arguments = dict(task.arguments)
            topic, threshold = arguments["topic"], arguments["threshold"]
            assert isinstance(topic, ir.Constant) and isinstance(threshold, ir.Constant)
            found.append(
                DriftWatch(task.name, float(threshold.text), drift_topic(pipeline.name, topic.text))
            )
    return found


def drift_topics(pipeline: ir.Pipeline) -> list[str]:
    """The drift topics of the hot path's drift watches, and their state topic (if any)."""
    topics = {w.topic for w in drift_watches(pipeline)}
    if topics:
        topics.add(drift_state_topic(pipeline.name))
    return sorted(topics)


def stream_topics(pipeline: ir.Pipeline) -> list[str]:
    """Every topic the plane reads or writes."""
    stream = pipeline.stream
    assert stream is not None
    topics = {stream.source_topic, stream.dead_letter_topic}
    topics |= {t for t in (stream.handoff_topic, stream.results_topic) if t is not None}
    topics |= {g.input_topic for g in groups(pipeline)}
    topics |= set(publish_topics(pipeline))
    topics |= set(drift_topics(pipeline))
    return sorted(topics)


COMMIT_DEADLINE_SECONDS = 10.0
"""A commit still running after this is stuck, not slow: the worker exits for a fresh process
to redo it (stages/stream/worker.py)."""
DRAIN_SECONDS = 2.0 + COMMIT_DEADLINE_SECONDS
"""What SIGTERM may take at most: a batch (Triton's timeout bounds it) and its commit."""
