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

import concurrent.futures as cf
import json
import logging
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
from typing import TYPE_CHECKING, Any, Literal

from rtflow import ir
from rtflow.param_types import decode
from rtflow.stages import reaper, semantics
from rtflow.stages.approvals import (
    ApprovalRequest,
    Approver,
    auto_approve,
    auto_reject,
    terminal_approver,
)
from rtflow.stages.event_routing import EventRouter
from rtflow.stages.events import Event, Sink
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
from rtflow.stages.progress import RunProgress
from rtflow.stages.run_report import RunSummary, StageTiming, Timings, percentile
from rtflow.stages.runtime import BadInput
from rtflow.stages.semantics import Phase
from rtflow.stages.shutdown import Shutdown
from rtflow.stages.stand_ins import (
    Invoker,
    StandIn,
    StandInError,
    check_signature,
    stand_in_invoker,
)
from rtflow.stages.workers import Invocation, WorkerPool, WorkerStartError, child_env

__all__ = [
    "ApprovalRequest",
    "BadInput",
    "EventResult",
    "LocalExecutor",
    "LocalRunError",
    "RunSummary",
    "StageTiming",
    "Timings",
    "auto_approve",
    "auto_reject",
    "main",
    "percentile",
    "run_local",
    "stage_environment",
    "terminal_approver",
]

if TYPE_CHECKING:
    from rtflow.gpu.triton_server import TritonServer

WorkflowStatus = Literal["Succeeded", "Failed"]
_log = logging.getLogger("rtflow.local")


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


# -- the executor ---------------------------------------------------------------------------------


def stage_environment(
    stage: ir.Stage, base: Mapping[str, str], overrides: Mapping[str, str | None]
) -> dict[str, str]:
    """A stage worker's environment as its container would have it: the stage's own ``env=``
    values over ``base`` (this process's); a value from a Secret cannot be read here, so it is
    whatever this process has under that name, if anything. Then ``overrides``
    (``--stage-env``): a value sets the variable; None takes this process's value instead of the
    stage's (as ``docker run -e NAME`` does), or removes it when this process has none."""
    env = dict(base)
    env.update({v.name: v.value for v in stage.env if v.value is not None})
    for name, value in overrides.items():
        if value is not None:
            env[name] = value
        elif name in base:
            env[name] = base[name]
        else:
            env.pop(name, None)
    return env


def _pool_invoker(pool: WorkerPool) -> Invoker:
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
        stage_env: Mapping[str, Mapping[str, str | None]] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.stage_env = {k: dict(v) for k, v in (stage_env or {}).items()}
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
        self._invokers: dict[str, Invoker] = {}
        self._owns_log_dir = False
        self.aborted = False
        self._pools: list[WorkerPool] = []
        threads = max(4, max_in_flight * 2)
        self._tasks = cf.ThreadPoolExecutor(threads, thread_name_prefix="rtflow-task")
        self._items = cf.ThreadPoolExecutor(threads, thread_name_prefix="rtflow-item")

    # lifecycle

    def check(self) -> None:
        """Refuse, in one line, what cannot run here (before any process starts)."""
        names = sorted(s.name for s in self.pipeline.stages)
        for given, what in ((self.stand_ins, "stand-in"), (self.stage_env, "--stage-env")):
            unknown = sorted(set(given) - set(names))
            if unknown:
                raise LocalRunError(
                    f"{what} given for {unknown[0]!r}, which is not a stage of "
                    f"{self.pipeline.name!r} ({', '.join(names)})"
                )
        for stage in self.pipeline.stages:
            if stage.name in self.stand_ins:
                try:
                    check_signature(stage, self.stand_ins[stage.name])
                except StandInError as exc:
                    raise LocalRunError(str(exc)) from None
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
                self._invokers[stage.name] = stand_in_invoker(stage, self.stand_ins[stage.name])
            elif stage.kind == "function":
                assert stage.function is not None
                pool = WorkerPool(
                    stage.function,
                    self.workers,
                    env=stage_environment(stage, env, self.stage_env.get(stage.name, {})),
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
        self.trace_id = uuid.UUID(self.uid).hex  # the W3C trace id of this run, in every log line
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
        defaults = semantics.producer_defaults(self.p, tasks)

        def _outputs(results: Mapping[str, TaskResult]) -> dict[str, dict[str, str]]:
            return semantics.readable_outputs(
                {n: (r.phase, r.outputs) for n, r in results.items()}, defaults
            )

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
                    settled = self._settle(task, state, deadline, _outputs(results), workflow)
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
        outputs: Mapping[str, Mapping[str, str]],
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
                task.when, inputs=self.inputs, outputs=outputs, workflow=workflow
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
        context = {
            "event_id": self.event_id,
            "trace_id": self.trace_id,
            "workflow": self.name,
            "task": task.name,
        }
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
            _log.warning(
                "event %s: task %s attempt %d failed (%s); retrying in %.3g s",
                self.event_id, task.name, attempts, error, wait, extra=context,
            )  # fmt: skip
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
    stage_env: Mapping[str, Mapping[str, str | None]] | None = None,
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
    ``stage_env``: per stage, environment variables over its own ``env=`` (None: this
    process's value, see :func:`stage_environment`).

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
        stage_env=stage_env,
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
        ticker = RunProgress(summary, router.lock, total).start() if progress else None
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
            if ticker is not None:
                ticker.stop()
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


def main(argv: Sequence[str] | None = None) -> int:
    """``rtflow run --local ARGS...`` (kept for callers of this module's first version)."""
    from rtflow.cli import main as cli_main

    return cli_main(["run", "--local", *(argv or sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
