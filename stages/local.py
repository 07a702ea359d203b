"""``rtflow run --local``: run a pipeline's IR on one machine, with Argo's semantics.

Events come from a JSONL file, stdin or a Kafka topic; each becomes one run of the pipeline (a
"workflow"), many in flight at once. Function stages run in long-lived worker processes
(:mod:`rtflow.stages.workers`) through the same runtime code as the stage containers; what Argo
would decide (``depends``, ``when``, ``withParam`` aggregation, retries and backoff, deadlines,
the exit handler) follows :mod:`rtflow.stages.semantics`. Results go to stdout or a topic; an
event that does not fit the pipeline's inputs, or whose run failed for good, goes to the
dead-letter output with the reason, and the run goes on.

Inference stages run for real: the compiled KServe v2 request goes to a Triton, either one given
by URL (``triton="http://host:8000"``) or, by default, one this run starts from the models the
pipeline calls and stops at the end (:mod:`rtflow.stages.inference`); gRPC inference stages get
that server's gRPC address.

Container stages cannot run without Docker: the run refuses up front, naming the stage, unless a
Python stand-in is given for it (``stand_ins={"stage-name": callable}``; any stage may have
one). A stand-in is called in this process with the decoded inputs as keyword arguments and
returns the value of a stage's single output, or for several outputs a mapping (or NamedTuple)
of output name to value; raising :class:`BadInput` marks a bad input. Its deadline is checked
after it returns (a thread cannot be killed).

Nothing that goes wrong with one event stops the run (:mod:`rtflow.stages.event_routing`,
:mod:`rtflow.stages.dead_letters`); a bad input is never retried, a failure that may pass is
retried as the stage's policy says. Offsets are committed once the broker confirms them
(:mod:`rtflow.stages.offsets`). SIGTERM and Ctrl-C drain and commit (:mod:`rtflow.stages.shutdown`)
and no child outlives the run, even one killed with SIGKILL (:mod:`rtflow.stages.reaper`).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import importlib
import json
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from rtflow import ir
from rtflow.param_types import decode, encode
from rtflow.stages import reaper, semantics
from rtflow.stages.approvals import (
    ApprovalRequest,
    Approver,
    auto_approve,
    auto_reject,
    terminal_approver,
)
from rtflow.stages.event_routing import EventRouter
from rtflow.stages.events import Event, JsonlSink, JsonlSource, Sink
from rtflow.stages.inference import (
    HttpInference,
    InferenceSetupError,
    TritonTarget,
    grpc_address_for,
    is_grpc_inference,
    local_infer_url,
    local_triton_server,
    needs_triton,
)
from rtflow.stages.runtime import BadInput
from rtflow.stages.semantics import Phase
from rtflow.stages.shutdown import Shutdown
from rtflow.stages.stream.launcher import StreamRunError
from rtflow.stages.workers import Invocation, WorkerPool, WorkerStartError, child_env

__all__ = [
    "ApprovalRequest",
    "BadInput",
    "EventResult",
    "LocalExecutor",
    "LocalRunError",
    "RunSummary",
    "StageTiming",
    "auto_approve",
    "auto_reject",
    "main",
    "run_local",
    "terminal_approver",
]

if TYPE_CHECKING:
    from rtflow.gpu.triton_server import TritonServer

StandIn = Callable[..., Any]
WorkflowStatus = Literal["Succeeded", "Failed"]


class LocalRunError(RuntimeError):
    """The run cannot start (a container stage without a stand-in, a stage that cannot load)."""


# -- results and timing ---------------------------------------------------------------------------


@dataclass
class TaskResult:
    phase: Phase
    outputs: dict[str, str] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None


@dataclass
class EventResult:
    event: str
    status: WorkflowStatus
    workflow: str
    uid: str
    ms: float
    tasks: dict[str, TaskResult]
    exit_tasks: dict[str, TaskResult]
    reason: str | None = None

    def record(self, pipeline: ir.Pipeline) -> dict[str, Any]:
        """The output line: each task's outputs decoded by their declared types."""
        outputs: dict[str, dict[str, Any]] = {}
        for name, result in self.tasks.items():
            if result.phase != "Succeeded" or not result.outputs:
                continue
            task = pipeline.task(name)
            stage = pipeline.stage(task.stage)
            values: dict[str, Any] = {}
            for out, text in result.outputs.items():
                declared = {o.name: o for o in stage.outputs}.get(out)
                try:
                    if declared is None or task.fan_out is not None:
                        values[out] = json.loads(text) if task.fan_out is not None else text
                    else:
                        values[out] = decode(text, declared.type)
                except ValueError:
                    values[out] = text
            outputs[name] = values
        return {
            "event": self.event,
            "status": self.status,
            "workflow": self.workflow,
            "ms": round(self.ms, 3),
            "outputs": outputs,
            "skipped": sorted(n for n, r in self.tasks.items() if r.phase == "Skipped"),
        }


@dataclass(frozen=True)
class StageTiming:
    stage: str
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    overhead_p99_ms: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Timings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ms: dict[str, list[float]] = {}
        self.overhead: dict[str, list[float]] = {}

    def add(self, stage: str, ms: float, overhead: float | None = None) -> None:
        with self._lock:
            self.ms.setdefault(stage, []).append(ms)
            if overhead is not None:
                self.overhead.setdefault(stage, []).append(overhead)

    def table(self) -> list[StageTiming]:
        with self._lock:
            return [
                StageTiming(
                    stage,
                    len(values),
                    percentile(values, 50),
                    percentile(values, 99),
                    max(values),
                    percentile(self.overhead[stage], 99) if self.overhead.get(stage) else None,
                )
                for stage, values in sorted(self.ms.items())
            ]


@dataclass
class RunSummary:
    events: int = 0
    succeeded: int = 0
    failed: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    stages: list[StageTiming] = field(default_factory=list)
    elapsed_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    interrupted: bool = False
    abandoned: bool = False
    signal_exit: int | None = None
    log_dir: str | None = None
    triton: str | None = None

    @property
    def exit_code(self) -> int:
        """0 every event succeeded, 1 one failed; after SIGTERM 0 and after Ctrl-C 130 (the
        events in flight were finished and committed: see :mod:`rtflow.stages.shutdown`)."""
        if self.signal_exit is not None:
            return self.signal_exit
        return 1 if self.failed or self.interrupted else 0

    @property
    def events_per_second(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        lines = [f"inference: {self.triton}"] if self.triton else []
        lines += [
            f"{self.events} events in {self.elapsed_s:.2f} s ({self.events_per_second:,.0f}/s): "
            f"{self.succeeded} succeeded, {self.failed} failed "
            f"({self.dead_lettered} to the dead-letter output)"
            + (f", {self.filtered} dropped by the trigger's filter" if self.filtered else "")
            + "; "
            f"latency p50 {self.latency_p50_ms:.2f} ms, p99 {self.latency_p99_ms:.2f} ms",
        ]
        if self.stages:
            width = max(len("stage"), *(len(s.stage) for s in self.stages))
            lines.append(
                f"{'stage':<{width}}  {'count':>7}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}"
                f"  {'overhead p99 ms':>15}"
            )
            for s in self.stages:
                overhead = f"{s.overhead_p99_ms:.3f}" if s.overhead_p99_ms is not None else "-"
                lines.append(
                    f"{s.stage:<{width}}  {s.count:>7}  {s.p50_ms:>8.2f}  {s.p99_ms:>8.2f}"
                    f"  {s.max_ms:>8.2f}  {overhead:>15}"
                )
        for event, reason in self.failures[:20]:
            lines.append(f"failed: {event}: {reason}")
        if len(self.failures) > 20:
            lines.append(f"... and {len(self.failures) - 20} more failed events")
        if self.abandoned:
            lines.append("stopped at once: the events in flight were dropped (a restart redoes)")
        elif self.interrupted:
            lines.append("stopped by a signal: the events in flight were finished and committed")
        return "\n".join(lines)


# -- the executor ---------------------------------------------------------------------------------


class _Invoker(Protocol):
    def __call__(
        self, raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation: ...


def _stand_in_invoker(stage: ir.Stage, function: StandIn) -> _Invoker:
    types = {p.name: p.type for p in stage.inputs}
    outputs = {o.name: o.type for o in stage.outputs}

    def invoke(
        raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation:
        started = time.perf_counter()

        def done(
            status: Literal["ok", "bad_input", "failed"],
            out: dict[str, str] | None = None,
            error: str | None = None,
        ) -> Invocation:
            ms = (time.perf_counter() - started) * 1000
            if status == "ok" and timeout is not None and ms > timeout * 1000:
                return Invocation("timeout", error=f"took {ms / 1000:.1f} s > {timeout:g} s", ms=ms)
            return Invocation(status, out or {}, error, ms, ms)

        try:
            kwargs: dict[str, Any] = {}
            for name, text in raw.items():
                if name not in types:
                    raise BadInput(f"unknown input {name!r}")
                try:
                    kwargs[name] = decode(text, types[name])
                except ValueError as exc:
                    raise BadInput(f"input {name!r}: {exc}") from None
            result = function(**kwargs)
            texts: dict[str, str] = {}
            if len(outputs) == 1:
                result = {next(iter(outputs)): result}
            for name, out_type in outputs.items():
                if isinstance(result, Mapping):
                    value = result.get(name)
                else:
                    value = getattr(result, name, None)
                if not out_type.accepts_value(value):
                    raise TypeError(f"stand-in output {name!r} is not a {out_type}: {value!r}")
                texts[name] = encode(value)
            return done("ok", texts)
        except BadInput as exc:
            return done("bad_input", error=str(exc))
        except Exception as exc:
            return done("failed", error=f"{type(exc).__name__}: {exc}")

    return invoke


def _pool_invoker(pool: WorkerPool) -> _Invoker:
    def invoke(
        raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation:
        return pool.call(raw, timeout=timeout, context=context)

    return invoke


class LocalExecutor:
    """Runs events through one pipeline. Thread-safe: :meth:`run_event` may be called from many
    threads at once (each event is one Argo workflow)."""

    def __init__(
        self,
        pipeline: ir.Pipeline,
        *,
        workers: int = 1,
        stand_ins: Mapping[str, StandIn] | None = None,
        approver: Approver | None = None,
        max_in_flight: int = 16,
        log_dir: Path | None = None,
        sleep: Callable[[float], None] = time.sleep,
        triton: str | TritonServer | None = None,
        triton_grpc: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.triton = triton
        self.triton_grpc = triton_grpc
        self.target: TritonTarget | None = None
        self._http: list[HttpInference] = []
        self.workers = workers
        self.stand_ins = dict(stand_ins or {})
        self.approver = approver or auto_reject
        self.max_in_flight = max_in_flight
        self.log_dir = log_dir
        self.sleep = sleep
        self.timings = Timings()
        self._invokers: dict[str, _Invoker] = {}
        self._owns_log_dir = False
        self.aborted = False
        self._pools: list[WorkerPool] = []
        threads = max(4, max_in_flight * 2)
        self._tasks = cf.ThreadPoolExecutor(threads, thread_name_prefix="rtflow-task")
        self._items = cf.ThreadPoolExecutor(threads, thread_name_prefix="rtflow-item")

    # lifecycle

    def check(self) -> None:
        """Refuse, in one line, what cannot run here (before any process starts)."""
        unknown = sorted(set(self.stand_ins) - {s.name for s in self.pipeline.stages})
        if unknown:
            raise LocalRunError(f"stand-in given for {unknown[0]!r}, which is not a stage")
        for stage in self.pipeline.stages:
            kind: str = stage.kind  # the IR may grow kinds this executor does not know yet
            if stage.name in self.stand_ins or kind in ("function", "approval", "inference"):
                continue
            what = (
                f"a container ({stage.image}) and cannot run locally without Docker"
                if kind == "container"
                else f"a {kind} stage, which local runs cannot execute yet"
            )
            raise LocalRunError(
                f"stage {stage.name!r} is {what}; pass a Python stand-in for it "
                f"(--stand-in {stage.name}=MODULE:FUNCTION)"
            )

    def start(self) -> LocalExecutor:
        self.check()
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix=f"rtflow-local-{self.pipeline.name}-"))
            self._owns_log_dir = True
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = child_env()
        pending: list[tuple[ir.Stage, WorkerPool]] = []
        for stage in self.pipeline.stages:
            if stage.name in self.stand_ins:
                self._invokers[stage.name] = _stand_in_invoker(stage, self.stand_ins[stage.name])
            elif stage.kind == "function":
                assert stage.function is not None
                pool = WorkerPool(
                    stage.function,
                    self.workers,
                    env=env,
                    log_path=self.log_dir / f"{stage.name}.log",
                )
                pending.append((stage, pool))
        try:
            self._pools.extend(pool for _, pool in pending)
            for _, pool in pending:
                pool.spawn()  # every stage's workers import in parallel
            self._start_inference()  # while the workers import
            for stage, pool in pending:
                try:
                    pool.wait_ready()
                except WorkerStartError as exc:
                    raise LocalRunError(f"stage {stage.name!r}: {exc}") from None
                self._invokers[stage.name] = _pool_invoker(pool)
        except BaseException:
            self.close()
            raise
        return self

    def _start_inference(self) -> None:
        """Point the inference stages at Triton: the given one, or one started here."""
        stages = needs_triton(self.pipeline, skip=list(self.stand_ins))
        if not stages:
            return
        if isinstance(self.triton, str):
            grpc = self.triton_grpc or grpc_address_for(self.triton)
            self.target = TritonTarget(self.triton.rstrip("/"), grpc)
        else:
            from rtflow.gpu.triton_server import TritonError

            server = self.triton
            owned = server is None
            try:
                if server is None:
                    server = local_triton_server(self.pipeline, stages)
                    self.target = TritonTarget(
                        server.http_url, server.grpc_url, server, True, server.work_dir.parent
                    )
                else:
                    self.target = TritonTarget(server.http_url, server.grpc_url, server, False)
                if not server.is_running:
                    server.start()
                    if owned and server.pid is not None:
                        reaper.watch(server.pid, group=True)  # its own session: stubs too
            except InferenceSetupError as exc:
                raise LocalRunError(str(exc)) from None
            except TritonError as exc:
                hint = "" if not owned else "; or pass --triton-url URL of a running Triton"
                raise LocalRunError(f"cannot start a local Triton: {exc}{hint}") from None
            if self.triton_grpc:
                self.target.grpc_address = self.triton_grpc
        for stage in stages:
            if stage.kind != "inference":
                continue  # gRPC stages are worker stages; their url input is rewritten
            assert stage.inference is not None
            try:
                client = HttpInference(
                    stage, local_infer_url(stage.inference.url, self.target.http_url)
                )
            except InferenceSetupError as exc:
                raise LocalRunError(str(exc)) from None
            self._http.append(client)
            self._invokers[stage.name] = client

    def abort(self) -> None:
        """Stop now: no more attempts or retries, the workers killed (calls in flight fail)."""
        self.aborted = True
        for pool in self._pools:
            pool.close(timeout=0.2)

    def close(self) -> None:
        self._tasks.shutdown(wait=not self.aborted, cancel_futures=True)
        self._items.shutdown(wait=not self.aborted, cancel_futures=True)
        for pool in self._pools:
            pool.close()
        self._pools.clear()
        for client in self._http:
            client.close()
        self._http.clear()
        if self.target is not None:
            self.target.close()
        if self._owns_log_dir and self.log_dir is not None:
            # a temporary folder of empty logs says nothing: keep it only when a worker wrote
            if not any(p.stat().st_size for p in self.log_dir.iterdir()):
                shutil.rmtree(self.log_dir, ignore_errors=True)
                self.log_dir = None
            self._owns_log_dir = False

    def __enter__(self) -> LocalExecutor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # one event

    def run_event(self, event_id: str, inputs: Mapping[str, str]) -> EventResult:
        """One workflow over already-checked input texts (see :func:`semantics.event_inputs`)."""
        return _Workflow(self, event_id, dict(inputs)).run()


class _Workflow:
    def __init__(self, executor: LocalExecutor, event_id: str, inputs: dict[str, str]) -> None:
        self.x = executor
        self.p = executor.pipeline
        self.event_id = event_id
        self.inputs = inputs
        self.uid = str(uuid.uuid4())
        self.name = f"{self.p.name}-{self.uid[:5]}"
        self.namespace = self.p.namespace or "default"

    def run(self) -> EventResult:
        started = time.monotonic()
        deadline = started + self.p.deadline_seconds
        fields = {"name": self.name, "namespace": self.namespace, "uid": self.uid}
        tasks = self._dag(self.p.tasks, deadline, fields)
        failed = [(n, r) for n, r in tasks.items() if r.phase in ("Failed", "Error")]
        status: WorkflowStatus = "Failed" if failed else "Succeeded"
        reason = _reason(failed[0]) if failed else None
        exit_results: dict[str, TaskResult] = {}
        if self.p.exit_tasks:
            fields = {
                **fields,
                "status": status,
                "duration": f"{time.monotonic() - started:.6f}",
            }
            exit_deadline = time.monotonic() + self.p.deadline_seconds
            exit_results = self._dag(self.p.exit_tasks, exit_deadline, fields)
            exit_failed = [
                (n, r) for n, r in exit_results.items() if r.phase in ("Failed", "Error")
            ]
            if exit_failed and status == "Succeeded":
                status, reason = "Failed", f"exit handler: {_reason(exit_failed[0])}"
        ms = (time.monotonic() - started) * 1000
        return EventResult(
            self.event_id, status, self.name, self.uid, ms, tasks, exit_results, reason
        )

    def _dag(
        self, tasks: tuple[ir.Task, ...], deadline: float, workflow: Mapping[str, str]
    ) -> dict[str, TaskResult]:
        results: dict[str, TaskResult] = {}
        phases: dict[str, Phase] = {}
        pending = {t.name: t for t in tasks}
        running: dict[cf.Future[TaskResult], str] = {}
        while pending or running:
            ready: list[ir.Task] = []
            progressed = True
            while progressed:
                progressed = False
                for name, task in list(pending.items()):
                    state = semantics.depends_state(task, phases)
                    if state == "wait":
                        continue
                    del pending[name]
                    progressed = True
                    settled = self._settle(task, state, deadline, results, workflow)
                    if settled is None:
                        ready.append(task)
                    else:
                        results[name], phases[name] = settled, settled.phase
            if len(ready) == 1 and not running:
                # nothing else to wait for: run it on this thread, saving a hand-off
                (task,) = ready
                result = self._task(task, deadline, _outputs(results), workflow)
                results[task.name], phases[task.name] = result, result.phase
                continue
            snapshot = _outputs(results)  # what the ready tasks may read, fixed now
            for task in ready:
                future = self.x._tasks.submit(self._task, task, deadline, snapshot, workflow)
                running[future] = task.name
            if not running:
                break
            done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                result = future.result()
                results[name], phases[name] = result, result.phase
        for name in pending:  # only reachable if a dependency never settles: omit them
            results[name] = TaskResult("Omitted", error="unresolved dependency")
        return results

    def _settle(
        self,
        task: ir.Task,
        state: str,
        deadline: float,
        results: Mapping[str, TaskResult],
        workflow: Mapping[str, str],
    ) -> TaskResult | None:
        """The result of a task that does not run (omitted, skipped, broken ``when``)."""
        if state == "omit":
            return TaskResult("Omitted")
        if time.monotonic() >= deadline:
            return TaskResult("Failed", error="the pipeline deadline was exceeded")
        if task.when is None:
            return None
        try:
            run = semantics.evaluate(
                task.when, inputs=self.inputs, outputs=_outputs(results), workflow=workflow
            )
        except (semantics.ConditionError, semantics.ValueMissing) as exc:
            return TaskResult("Error", error=f"when cannot be evaluated: {exc}")
        return None if run else TaskResult("Skipped")

    def _task(
        self,
        task: ir.Task,
        deadline: float,
        outputs: Mapping[str, Mapping[str, str]],
        workflow: Mapping[str, str],
    ) -> TaskResult:
        stage = self.p.stage(task.stage)
        try:
            if task.fan_out is None:
                raw = self._arguments(task, outputs, workflow, None)
                return self._attempts(task, stage, raw, deadline, workflow)
            items = semantics.fan_out_items(
                semantics.value_text(
                    task.fan_out, inputs=self.inputs, outputs=outputs, workflow=workflow
                )
            )
        except (semantics.ValueMissing, semantics.ConditionError) as exc:
            return TaskResult("Error", error=f"cannot resolve {exc}")
        if not items:
            return TaskResult("Skipped", error="empty withParam list")
        children = [
            self.x._items.submit(
                self._attempts,
                task,
                stage,
                self._arguments(task, outputs, workflow, item),
                deadline,
                workflow,
            )
            for item in items
        ]
        done = [c.result() for c in children]
        attempts = sum(c.attempts for c in done)
        bad = [c for c in done if c.phase != "Succeeded"]
        if bad:
            index = done.index(bad[0])
            return TaskResult(
                bad[0].phase,
                attempts=attempts,
                error=f"item {index} ({items[index]}): {bad[0].error}",
            )
        names = [o.name for o in stage.outputs]
        aggregated = {n: semantics.aggregate([c.outputs[n] for c in done]) for n in names}
        return TaskResult("Succeeded", aggregated, attempts)

    def _arguments(
        self,
        task: ir.Task,
        outputs: Mapping[str, Mapping[str, str]],
        workflow: Mapping[str, str],
        item: str | None,
    ) -> dict[str, str]:
        raw = {
            name: semantics.value_text(
                value, inputs=self.inputs, outputs=outputs, workflow=workflow, item=item
            )
            for name, value in task.arguments
        }
        stage = self.p.stage(task.stage)
        for param in stage.inputs:  # Argo fills a template input the task does not pass
            if param.name not in raw and param.default is not None:
                raw[param.name] = param.default
        target = self.x.target
        if target is not None and is_grpc_inference(stage) and stage.name not in self.x.stand_ins:
            cluster = next((p.default for p in stage.inputs if p.name == "url"), None)
            if raw.get("url") == cluster:  # the cluster Service's address: this run's Triton
                raw["url"] = target.grpc_address
        return raw

    def _attempts(
        self,
        task: ir.Task,
        stage: ir.Stage,
        raw: dict[str, str],
        deadline: float,
        workflow: Mapping[str, str],
    ) -> TaskResult:
        if stage.kind == "approval":
            return self._approval(task, stage, workflow)
        invoke = self.x._invokers[stage.name]
        context = {"event_id": self.event_id, "workflow": self.name, "task": task.name}
        first = time.monotonic()
        attempts = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.x.aborted:
                why = "the run was stopped" if self.x.aborted else "the pipeline deadline"
                why += "" if self.x.aborted else " was exceeded"
                return TaskResult("Failed", attempts=attempts, error=why)
            timeout = remaining
            own = stage.deadline_seconds
            if stage.kind == "inference" and stage.inference is not None:
                own = stage.inference.timeout_seconds  # the http template's timeoutSeconds
            if own is not None:
                timeout = min(timeout, float(own))
            result = invoke(raw, timeout, context)
            attempts += 1
            worker = stage.name not in self.x.stand_ins and stage.kind != "inference"
            overhead = result.overhead_ms if worker else None
            self.x.timings.add(stage.name, result.ms, overhead)
            if result.status == "ok":
                return TaskResult("Succeeded", result.outputs, attempts)
            exit_code = {"bad_input": 65, "failed": 1, "timeout": -1, "crashed": 137}[result.status]
            error = f"{result.status}: {result.error}"
            if result.status == "timeout" and timeout < (own or float("inf")):
                error = "the pipeline deadline was exceeded"
            # every failure of a stage's own process is Failed in Argo's terms (Error is for the
            # controller's problems, which cannot happen here)
            if result.status == "bad_input" or not semantics.should_retry(
                stage.retry, stage.kind, "Failed", exit_code
            ):  # a bad input fails the same way again, whatever the stage's kind
                return TaskResult("Failed", attempts=attempts, error=error)
            assert stage.retry is not None
            wait = semantics.backoff_wait(
                stage.retry, attempts - 1, elapsed_since_first=time.monotonic() - first
            )
            if wait is None:
                return TaskResult("Failed", attempts=attempts, error=error)
            if time.monotonic() + wait >= deadline:
                error += " (a retry would pass the pipeline deadline)"
                return TaskResult("Failed", attempts=attempts, error=error)
            if wait > 0:
                self.x.sleep(wait)

    def _approval(self, task: ir.Task, stage: ir.Stage, workflow: Mapping[str, str]) -> TaskResult:
        approval = stage.approval
        assert approval is not None
        started = time.perf_counter()
        request = ApprovalRequest(
            self.p.name,
            task.name,
            self.event_id,
            self.name,
            approval.choices,
            approval.default,
            approval.approve,
            stage.description,
        )
        try:
            decision = self.x.approver(request)
        except Exception as exc:
            return TaskResult("Failed", attempts=1, error=f"approval failed: {exc}")
        finally:
            self.x.timings.add(stage.name, (time.perf_counter() - started) * 1000)
        if decision not in approval.choices:
            return TaskResult(
                "Failed",
                attempts=1,
                error=f"decision {decision!r} is not one of {approval.choices}",
            )
        return TaskResult("Succeeded", {"decision": decision}, 1)


def _outputs(results: Mapping[str, TaskResult]) -> dict[str, dict[str, str]]:
    return {n: r.outputs for n, r in results.items() if r.phase == "Succeeded"}


def _reason(failed: tuple[str, TaskResult]) -> str:
    name, result = failed
    tries = f" after {result.attempts} attempt(s)" if result.attempts > 1 else ""
    return f"task {name} {result.phase.lower()}{tries}: {result.error}"


# -- the run --------------------------------------------------------------------------------------


def run_local(
    pipeline: ir.Pipeline,
    events: Iterable[Event],
    *,
    output: Sink,
    dead_letter: Sink,
    workers: int = 1,
    max_in_flight: int = 16,
    stand_ins: Mapping[str, StandIn] | None = None,
    approver: Approver | None = None,
    progress: bool = False,
    log_dir: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    triton: str | TritonServer | None = None,
    triton_grpc: str | None = None,
    shutdown: Shutdown | None = None,
) -> RunSummary:
    """Run every event through ``pipeline``; results to ``output``, the rest to ``dead_letter``.

    Raises :class:`LocalRunError` before reading any event if the pipeline cannot run here.
    ``events`` may have ``total`` (for the progress bar), ``before_commit`` (called with the
    sinks' flush before offsets are committed), ``stop()`` (read no more) and ``close()``
    (commit what is done). ``triton``: the Triton inference stages call (its HTTP base URL, or
    a :class:`TritonServer`, started if it is not running and left running); None starts one
    from the pipeline's servers and stops it at the end. ``triton_grpc``: the gRPC
    ``host:port`` for gRPC inference stages (default: the server's, or port 8001 of the URL's
    host). ``shutdown``: a :class:`Shutdown` whose request (SIGTERM, Ctrl-C) stops the run
    gracefully (see :mod:`rtflow.stages.shutdown`); a KeyboardInterrupt does the same.

    Every child the run starts is also reported to a reaper (:mod:`rtflow.stages.reaper`) that
    stops it should this process die without cleaning up.
    """
    summary = RunSummary()
    stop = shutdown or Shutdown()
    executor = LocalExecutor(
        pipeline,
        workers=workers,
        stand_ins=stand_ins,
        approver=approver,
        max_in_flight=max_in_flight,
        log_dir=log_dir,
        sleep=sleep,
        triton=triton,
        triton_grpc=triton_grpc,
    )
    router = EventRouter(pipeline, executor, output, dead_letter, summary)
    if hasattr(events, "before_commit"):
        events.before_commit = router.flush  # a Kafka source commits only what is written
    if hasattr(events, "window") and getattr(events, "window", None) is None:
        events.window = 2 * max_in_flight  # what a crash may redo: running and queued
    work: queue.Queue[Event | None] = queue.Queue(maxsize=max_in_flight)
    crashed: list[BaseException] = []

    tick: Callable[[], None] = getattr(events, "tick", lambda: None)  # commits, same thread

    def feed() -> None:
        try:
            for event in events:
                while not stop.requested.is_set():
                    try:
                        work.put(event, timeout=0.02)
                        break
                    except queue.Full:
                        tick()
                if stop.requested.is_set() or crashed:
                    return
        except BaseException as exc:  # the source failed (a fatal consumer error): say why
            crashed.append(exc)

    def drive() -> None:
        while (event := work.get()) is not None:
            if stop.requested.is_set() or crashed:
                continue  # not started: not acknowledged, so a restart reads it again
            try:
                router.handle(event)
            except BaseException as exc:  # a sink that fails: stop the run, say why
                crashed.append(exc)

    total = getattr(events, "total", None)
    stop_ticker = threading.Event()
    with reaper.active():
        executor.start()
        summary.triton = executor.target.describe() if executor.target is not None else None
        started = time.monotonic()  # events/s and elapsed count from the first event on
        drivers = [
            threading.Thread(target=drive, name=f"rtflow-event-{i}", daemon=True)
            for i in range(max_in_flight)
        ]
        for d in drivers:
            d.start()
        feeder = threading.Thread(target=feed, name="rtflow-feed", daemon=True)
        ticker = threading.Thread(
            target=_ticker, args=(summary, router.lock, total, started, stop_ticker), daemon=True
        )
        if progress:
            ticker.start()
        aborted = False
        try:
            try:
                feeder.start()
                while feeder.is_alive() and not stop.requested.is_set() and not crashed:
                    feeder.join(0.2)
            except KeyboardInterrupt:
                stop.request(signal.SIGINT)
            source_stop = getattr(events, "stop", None)
            if source_stop is not None:
                source_stop()
            feeder.join(1.0)  # a source blocked on stdin may never return: it is a daemon
            try:
                for _ in drivers:
                    work.put(None)
                for d in drivers:
                    d.join()  # the events in flight finish (a second signal stops waiting)
            except KeyboardInterrupt:
                aborted = True
                router.abandoned.set()
                executor.abort()
        finally:
            summary.elapsed_s = time.monotonic() - started
            stop_ticker.set()
            if progress:
                ticker.join()
            try:
                if not crashed:
                    router.flush()
                close = getattr(events, "close", None)
                if close is not None and not (feeder.is_alive() and aborted):
                    close()  # commits what is done
            finally:
                executor.close()
        summary.log_dir = str(executor.log_dir) if executor.log_dir is not None else None
        summary.stages = executor.timings.table()
    summary.interrupted = stop.requested.is_set()
    summary.abandoned = router.abandoned.is_set()
    summary.signal_exit = stop.exit_code
    summary.latency_p50_ms = percentile(router.latencies, 50)
    summary.latency_p99_ms = percentile(router.latencies, 99)
    if crashed:
        raise crashed[0]
    return summary


def _ticker(
    summary: RunSummary,
    lock: threading.Lock,
    total: int | None,
    started: float,
    stop: threading.Event,
) -> None:
    """A one-line progress bar on stderr, redrawn a few times a second."""
    while True:
        stopped = stop.wait(0.25)
        with lock:
            done, ok, bad = summary.events, summary.succeeded, summary.failed
        rate = done / max(time.monotonic() - started, 1e-9)
        if total:
            filled = int(30 * done / total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total}"
        else:
            bar = f"{done} events"
        sys.stderr.write(f"\r{bar}  {ok} ok  {bad} failed  {rate:,.0f}/s ")
        sys.stderr.flush()
        if stopped:
            sys.stderr.write("\n")
            return


# -- the command line -----------------------------------------------------------------------------


def _stand_in(spec: str) -> tuple[str, StandIn]:
    name, sep, reference = spec.partition("=")
    module, colon, attribute = reference.partition(":")
    if not sep or not colon:
        raise LocalRunError(f"--stand-in {spec!r} is not STAGE=MODULE:FUNCTION")
    target: Any = importlib.import_module(module)
    for part in attribute.split("."):
        target = getattr(target, part)
    return name, getattr(target, "function", None) or target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtflow run --local",
        description="Run a pipeline on this machine over a stream of events.",
    )
    parser.add_argument("pipeline", metavar="PATH_OR_MODULE[:PIPELINE]")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", metavar="FILE|-", help="JSONL events (- for stdin)")
    source.add_argument("--kafka-topic", help="consume events from this topic")
    parser.add_argument("--kafka-brokers", default=os.environ.get("RTFLOW_KAFKA_BROKERS"))
    parser.add_argument("--kafka-group", help="consumer group (default: the trigger's)")
    parser.add_argument("--max-events", type=int, help="stop after this many events")
    parser.add_argument(
        "--idle-timeout", type=float, help="stop after this many seconds without a Kafka event"
    )
    out = parser.add_mutually_exclusive_group()
    out.add_argument("--output", default="-", metavar="FILE|-", help="results as JSONL")
    out.add_argument("--output-topic", help="results to this Kafka topic")
    dead = parser.add_mutually_exclusive_group()
    dead.add_argument("--dead-letter", metavar="FILE", help="failed events as JSONL")
    dead.add_argument("--dead-letter-topic", metavar="TOPIC", help="failed events to a topic")
    parser.add_argument("--workers", type=int, default=1, help="worker processes per stage")
    parser.add_argument("--max-in-flight", type=int, default=16, help="events run at once")
    approve = parser.add_mutually_exclusive_group()
    approve.add_argument("--auto-approve", action="store_true")
    approve.add_argument("--auto-reject", action="store_true")
    parser.add_argument(
        "--stand-in",
        action="append",
        default=[],
        metavar="STAGE=MODULE:FUNCTION",
        help="a Python function standing in for a container stage",
    )
    parser.add_argument(
        "--triton-url",
        metavar="URL",
        help="an existing Triton's HTTP URL for inference stages (default: start one here "
        "from the pipeline's model declarations, stopped at the end)",
    )
    parser.add_argument(
        "--triton-grpc-url",
        metavar="HOST:PORT",
        help="its gRPC address, for via='grpc' stages (default: port 8001 of --triton-url's host)",
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--log-dir", type=Path, help="worker logs (default: a temporary folder)")
    parser.add_argument(
        "--plane",
        choices=("stream", "workflow"),
        help="a pipeline with stream=rtflow.Stream(...) runs on the stream plane (long-running "
        "Kafka workers, exactly once) unless --plane workflow; the workflow plane runs each "
        "event as a workflow",
    )
    parser.add_argument(
        "--duration", type=float, help="stream plane: run this many seconds (default: until "
        "every event fed from --events is done)",
    )  # fmt: skip
    return parser


def _select_pipeline(target: str) -> ir.Pipeline:
    from rtflow.loader import load_pipelines

    _, pipelines = load_pipelines(target)
    if len(pipelines) > 1:
        names = ", ".join(p.name for p in pipelines)
        raise LocalRunError(f"{target} defines several pipelines ({names}); name one as PATH:ATTR")
    return pipelines[0].build()


def main(argv: Sequence[str] | None = None) -> int:
    """``rtflow run --local ...``; 0 when every event succeeded, 1 when one failed, 2 on a
    usage or set-up error (one line on stderr)."""
    with Shutdown() as shutdown:  # first: a SIGTERM while loading must not kill it half-way
        args = build_parser().parse_args(argv)
        try:
            return _main(args, shutdown)
        except (LocalRunError, StreamRunError, OSError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Exception as exc:
            from rtflow.errors import RtflowError

            if isinstance(exc, RtflowError):
                print(f"error: {exc}", file=sys.stderr)
                return 2
            raise


def _main(args: argparse.Namespace, shutdown: Shutdown) -> int:
    pipeline = _select_pipeline(args.pipeline)
    if shutdown.exit_code is not None:  # stopped while loading: nothing started, nothing to do
        return shutdown.exit_code
    if pipeline.stream is not None and args.plane != "workflow":
        from rtflow.stages.stream.launcher import run_stream_local

        if args.kafka_topic and args.kafka_topic != pipeline.stream.source_topic:
            raise LocalRunError(
                f"the stream plane consumes the trigger's topic {pipeline.stream.source_topic!r}"
            )
        with reaper.active(mark=True):  # kill -9: its broker, Triton and workers go too
            return run_stream_local(
                args.pipeline,
                pipeline,
                events=args.events,
                brokers=args.kafka_brokers,
                triton_grpc=args.triton_grpc_url,
                workers=args.workers if args.workers != 1 else None,
                duration=args.duration,
                progress=not args.no_progress and sys.stderr.isatty(),
                log_dir=args.log_dir,
            )
    stand_ins = dict(_stand_in(s) for s in args.stand_in)
    needs_kafka = args.kafka_topic or args.output_topic or args.dead_letter_topic
    if needs_kafka and not args.kafka_brokers:
        raise LocalRunError("a Kafka topic needs --kafka-brokers (or RTFLOW_KAFKA_BROKERS)")
    events: Any
    if args.kafka_topic:
        from rtflow.stages.kafka_io import KafkaSource

        group = args.kafka_group
        if group is None:
            kafka = [t.source for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
            group = kafka[0].consumer_group if kafka else f"rtflow-local-{pipeline.name}"
        events = KafkaSource(
            args.kafka_topic,
            args.kafka_brokers,
            group=group,
            max_events=args.max_events,
            idle_timeout=args.idle_timeout,
        )
    else:
        events = JsonlSource(args.events)
    sinks: list[Sink] = []
    output: Sink
    dead_letter: Sink
    if args.output_topic:
        from rtflow.stages.kafka_io import KafkaSink

        output = KafkaSink(args.output_topic, args.kafka_brokers)
    else:
        output = JsonlSink(args.output)
    if args.dead_letter_topic:
        from rtflow.stages.kafka_io import KafkaSink

        dead_letter = KafkaSink(args.dead_letter_topic, args.kafka_brokers, letters=True)
    else:
        dead_letter = JsonlSink(args.dead_letter or "stderr")
    sinks = [output, dead_letter]
    approver: Approver
    if args.auto_approve:
        approver = auto_approve
    elif args.auto_reject:
        approver = auto_reject
    else:
        approver = terminal_approver()
    # Results go to the real stdout through the sink; anything else printing (a stand-in, a
    # library) goes to stderr so that stdout stays JSONL.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:  # SIGTERM / Ctrl-C: drain, commit, stop the children; kill -9: the reaper stops them
        with reaper.active(mark=True):
            summary = run_local(
                pipeline,
                events,
                output=output,
                dead_letter=dead_letter,
                workers=args.workers,
                max_in_flight=args.max_in_flight,
                stand_ins=stand_ins,
                approver=approver,
                progress=not args.no_progress and sys.stderr.isatty(),
                log_dir=args.log_dir,
                triton=args.triton_url,
                triton_grpc=args.triton_grpc_url,
                shutdown=shutdown,
            )
    finally:
        sys.stdout = real_stdout
        for sink in sinks:
            sink.close()
    print(summary.render(), file=sys.stderr)
    if summary.log_dir:
        print(f"worker logs: {summary.log_dir}", file=sys.stderr)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())
