"""The latency budget as a check: each path's latency, estimated from a cost model.

``latency_budget_ms`` says how long an event may take from its trigger to the end of the
pipeline's work. A path is the chain of tasks from the trigger to a task nothing else waits for;
its estimate adds up what each step of the plane it runs on costs. ``rtflow compile`` fails when
a path's estimate is over the budget (the plane cannot meet it), and ``rtflow graph`` prints the
estimate of every path. A path through an approval waits for a person and has no estimate. A
path the stream plane hands off to the workflow plane is estimated but not held to the budget:
the hot path has produced its results by then, and what follows (a review, a retraining run) is
asynchronous by the pipeline's own design.

The stream plane's figures are measured (BENCHMARKS.md, "Stream plane": the fraud hot path,
exactly once at 20,000 events/s on 2 shared cores, p50 24-27 ms); the estimate is a typical
(p50-like) latency, so a budget at or under it cannot be met. The workflow plane's figures are
not measured on this project's machine, which runs no cluster: they are the order of magnitude
of Argo's own mechanics on a cluster with cached images (an EventBus hop and a Sensor, the
workflow controller picking the Workflow up, a pod per step), deliberately on the low side, so
that a path the check refuses is refused for a good reason.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

from rtflow import ir

# -- the stream plane (measured: BENCHMARKS.md, "Stream plane") ---------------------------------
KAFKA_HOP_MS = 7.0
"""A record's send to its being readable by a consumer (the measuring chain, p50)."""
WORKER_BATCH_MS = 1.8
"""A worker's own work on a batch besides its stages: decode, filter, payload schema, produce
(fraud: 4.8 ms a batch, of which Triton 2.0 and the stages 1.0)."""
FUNCTION_STAGE_MS = 0.35
"""One function stage over a batch of about a hundred events."""
TRITON_REQUEST_MS = 2.0
"""One micro-batched gRPC request of a small model, on CPU; the model's dynamic-batching queue
delay comes on top."""
COMMIT_MS = 4.0
"""A transaction's commit (exactly once), mean, its flush overlapping the offsets' round trips:
records become visible when it ends."""

# -- the workflow plane (Argo's mechanics on a cluster; not measured here) ----------------------
SENSOR_MS = 50.0
"""The EventSource publishing to the EventBus and the Sensor evaluating and acting."""
WORKFLOW_START_MS = 1000.0
"""The workflow controller taking a new Workflow from its queue to its first pod created."""
POD_STEP_MS = 2000.0
"""A step that runs in a pod of its own: scheduled, started from a cached image, run, its
outputs read back by the controller."""
HTTP_STEP_MS = 1000.0
"""An http step (Triton's REST endpoint): the Argo agent's pod is started for the Workflow's
first one; the request itself is milliseconds."""

Plane = Literal["stream", "workflow"]


@dataclass(frozen=True)
class Term:
    what: str
    ms: float


@dataclass(frozen=True)
class PathEstimate:
    """One path: its tasks in order, the plane each runs on, and the estimate's terms."""

    tasks: tuple[str, ...]
    planes: tuple[Plane, ...]
    terms: tuple[Term, ...]
    human: str | None = None  # the approval the path waits on, if any

    @property
    def ms(self) -> float:
        return sum(t.ms for t in self.terms)

    @property
    def plane(self) -> str:
        return "workflow" if "workflow" in self.planes else "stream"

    @property
    def handed_off(self) -> bool:
        """Starts on the stream plane and goes on on the workflow plane (asynchronous)."""
        return "stream" in self.planes and "workflow" in self.planes

    def line(self, budget_ms: int | None) -> str:
        path = " -> ".join(self.tasks)
        if self.human is not None:
            return f"{path}: waits for a person ({self.human}); no estimate"
        if self.handed_off:
            return f"{path}: handed off to the workflow plane, ~{_duration(self.ms)} (asynchronous)"
        verdict = ""
        if budget_ms is not None:
            verdict = f" ({'within' if self.ms <= budget_ms else 'over'} {budget_ms} ms)"
        return f"{path}: {self.plane} plane, ~{_duration(self.ms)}{verdict}"


def _duration(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def _leaves(pipeline: ir.Pipeline) -> list[ir.Task]:
    waited = {d for t in pipeline.tasks for d in t.depends}
    return [t for t in pipeline.tasks if t.name not in waited]


def _longest(pipeline: ir.Pipeline, task: ir.Task, cost: dict[str, float]) -> list[ir.Task]:
    """The costliest chain of dependencies ending at ``task`` (its critical path)."""
    best: list[ir.Task] = []
    for name in task.depends:
        chain = _longest(pipeline, pipeline.task(name), cost)
        if sum(cost[t.name] for t in chain) > sum(cost[t.name] for t in best):
            best = chain
    return [*best, task]


def _queue_delay_ms(pipeline: ir.Pipeline, inference: ir.Inference) -> float:
    for server in pipeline.servers:
        if server.name != inference.server:
            continue
        for model in server.models:
            batching = getattr(model, "dynamic_batching", None)
            if model.name == inference.model and batching is not None:
                return float(getattr(batching, "max_queue_delay_microseconds", 0)) / 1000.0
    return 0.0


def _task_terms(pipeline: ir.Pipeline, task: ir.Task, plane: Plane) -> list[Term]:
    stage = pipeline.stage(task.stage)
    if plane == "stream":
        if stage.inference is not None:
            delay = _queue_delay_ms(pipeline, stage.inference)
            return [Term(f"{task.name}: Triton request", TRITON_REQUEST_MS + delay)]
        return [Term(f"{task.name}: stage over the batch", FUNCTION_STAGE_MS)]
    if stage.inference is not None:
        return [Term(f"{task.name}: http step", HTTP_STEP_MS)]
    return [Term(f"{task.name}: pod", POD_STEP_MS)]


def _stream_entry(stream: ir.StreamPlane, label: str) -> list[Term]:
    return [
        Term(f"{label}: Kafka", KAFKA_HOP_MS),
        Term(f"{label}: batch wait", float(stream.max_wait_ms)),
        Term(f"{label}: worker", WORKER_BATCH_MS),
    ]


def _stream_exit(stream: ir.StreamPlane, label: str) -> list[Term]:
    if stream.guarantee != "exactly_once":
        return []
    return [
        Term(f"{label}: transaction interval", float(stream.transaction_interval_ms)),
        Term(f"{label}: commit", COMMIT_MS),
    ]


def estimate_path(pipeline: ir.Pipeline, tasks: list[ir.Task]) -> PathEstimate:
    stream = pipeline.stream
    hot = set(stream.hot_tasks) if stream is not None else set()
    planes: list[Plane] = ["stream" if t.name in hot else "workflow" for t in tasks]
    approvals = [t.name for t in tasks if pipeline.stage(t.stage).kind == "approval"]
    terms: list[Term] = []
    previous: Plane | None = None
    for task, plane in zip(tasks, planes, strict=True):
        if plane == "stream":
            assert stream is not None
            if previous is None or task.name in stream.hops:
                if previous is not None:
                    terms += _stream_exit(stream, "hop")
                terms += _stream_entry(stream, "hop" if previous else "trigger")
        elif previous != "workflow":
            if previous == "stream":
                assert stream is not None
                terms += _stream_exit(stream, "hand-off")
                terms.append(Term("hand-off: Kafka", KAFKA_HOP_MS))
            terms += [
                Term("EventSource + Sensor", SENSOR_MS),
                Term("Workflow start", WORKFLOW_START_MS),
            ]
        terms += _task_terms(pipeline, task, plane)
        previous = plane
    if previous == "stream":
        assert stream is not None
        terms += _stream_exit(stream, "results")
    return PathEstimate(
        tuple(t.name for t in tasks),
        tuple(planes),
        tuple(terms),
        human=approvals[0] if approvals else None,
    )


def estimates(pipeline: ir.Pipeline) -> list[PathEstimate]:
    """Every path from the trigger to a task nothing waits for, costliest chain first."""
    if not pipeline.tasks:
        return []
    stream = pipeline.stream
    hot = set(stream.hot_tasks) if stream is not None else set()
    cost = {
        t.name: sum(
            x.ms for x in _task_terms(pipeline, t, "stream" if t.name in hot else "workflow")
        )
        for t in pipeline.tasks
    }
    found = [estimate_path(pipeline, _longest(pipeline, leaf, cost)) for leaf in _leaves(pipeline)]
    return sorted(found, key=lambda e: (-e.ms, e.tasks))


def over_budget(pipeline: ir.Pipeline) -> Iterator[PathEstimate]:
    """The paths whose estimate the pipeline's latency budget cannot hold."""
    budget = pipeline.latency_budget_ms
    if budget is None:
        return
    for estimate in estimates(pipeline):
        if estimate.human is None and not estimate.handed_off and estimate.ms > budget:
            yield estimate
