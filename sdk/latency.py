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
(p50-like) latency, so a budget at or under it cannot be met.

The workflow plane's figures are measured too, on Argo's real workflow-controller (v4.1.4, its
default configuration) running the fraud example here (BENCHMARKS.md, "Control plane";
tests/integration/test_execution_tier.py; its pods are local processes, rtflow.testing.
pod_runner playing the kubelet). What sets them is the controller's work queue, not the pods:
every event that concerns a Workflow (a pod's update, a WorkflowTaskResult, a WorkflowTaskSet,
the controller's own write of the Workflow) re-queues it through a rate limiter that answers
``DEFAULT_REQUEUE_TIME`` for every item (workflow/controller/rate_limiters.go,
``fixedItemIntervalRateLimiter``; controller.go, ``enqueueWfFromPodLabel`` and the informers'
``AddRateLimited``): after the pass that creates a step's pod, the next pass comes one requeue
time (10 s by default) later, and that is when the controller sees the pod ended and creates
the next step's. So a step another step waits for costs a requeue time (its pod, a few seconds,
runs inside it: measured 10 s a step); an http step costs three (30 s measured): Argo's agent
reports its answer on its patch ticker (``ARGO_AGENT_PATCH_RATE``, the requeue time by
default), the WorkflowTaskSet's update re-queues the Workflow, and the DAG sees the node one
pass later (operator.go runs ``taskSetReconciliation`` after the template's execution). The
step that ends a path has done its work when its container ends: it costs its pod's run. A
controller run with a lower ``DEFAULT_REQUEUE_TIME`` (Argo's comment suggests 2 s as the low
end) passes steps faster; the model assumes Argo's default, what a cluster runs unless told.
The EventBus hop and the Sensor are not measured here yet (order of magnitude).
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

# -- the workflow plane (measured: BENCHMARKS.md, "Control plane"; see the module docstring) ----
SENSOR_MS = 50.0
"""The EventSource publishing to the EventBus and the Sensor evaluating and acting (not
measured yet: an order of magnitude)."""
WORKFLOW_START_MS = 1500.0
"""The workflow controller taking a new Workflow (no delay: a new one is not rate limited) to
its first pod created: 1.4-1.6 s measured."""
REQUEUE_MS = 10_000.0
"""Argo's ``DEFAULT_REQUEUE_TIME``: the controller sees a step's end at its next pass, this long
after the pass that started it (measured: 10 s a step, each step of the fraud example)."""
POD_RUN_MS = 3000.0
"""A step's pod from its creation to its container's end (argoexec's init, the stage, its wait
reporting the outputs): 2-4 s measured, median 3 s; the last step of a path costs this."""
HTTP_PASSES = 3
"""Requeue times an http step costs when another step waits for it (30 s measured): the
agent's patch ticker, the WorkflowTaskSet's requeue, the DAG's next pass."""

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


def _task_terms(pipeline: ir.Pipeline, task: ir.Task, plane: Plane, *, waited: bool) -> list[Term]:
    """The task's cost on its plane; on the workflow plane, ``waited`` (another step of the
    path waits for it) adds the controller's passes until it sees the step's end."""
    stage = pipeline.stage(task.stage)
    if plane == "stream":
        if stage.inference is not None:
            delay = _queue_delay_ms(pipeline, stage.inference)
            return [Term(f"{task.name}: Triton request", TRITON_REQUEST_MS + delay)]
        return [Term(f"{task.name}: stage over the batch", FUNCTION_STAGE_MS)]
    if not waited:  # its work is done when its pod (the agent's, for an http step) ends
        return [Term(f"{task.name}: pod", POD_RUN_MS)]
    if stage.inference is not None or stage.http is not None:  # rtflow.http too: the agent
        return [Term(f"{task.name}: http step, {HTTP_PASSES} controller passes",
                     HTTP_PASSES * REQUEUE_MS)]  # fmt: skip
    return [Term(f"{task.name}: pod, seen at the controller's next pass",
                 max(REQUEUE_MS, POD_RUN_MS))]  # fmt: skip


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
    for at, (task, plane) in enumerate(zip(tasks, planes, strict=True)):
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
        terms += _task_terms(pipeline, task, plane, waited=at < len(tasks) - 1)
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
            x.ms
            for x in _task_terms(
                pipeline, t, "stream" if t.name in hot else "workflow", waited=True
            )
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
