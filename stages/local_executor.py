"""The local run's executor: what runs each stage of one pipeline, started once for every event.

:class:`LocalExecutor` refuses up front what cannot run here (a container stage without a
stand-in), then starts the stages' worker processes (:mod:`rtflow.stages.workers`), the
stand-ins (:mod:`rtflow.stages.stand_ins`) and the Triton the inference stages call
(:mod:`rtflow.stages.inference`), and closes them all at the end. Each event is then one
workflow over them (:mod:`rtflow.stages.local_workflow`), many at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from rtflow import ir
from rtflow.stages import reaper
from rtflow.stages.approvals import Approver, auto_reject
from rtflow.stages.http_step import HttpStep
from rtflow.stages.inference import (
    HttpInference,
    InferenceSetupError,
    TritonTarget,
    grpc_address_for,
    local_infer_url,
    local_triton_server,
    needs_triton,
)
from rtflow.stages.local_results import EventResult
from rtflow.stages.local_workflow import _Workflow
from rtflow.stages.run_report import Timings
from rtflow.stages.stand_ins import (
    Invoker,
    StandIn,
    StandInError,
    check_signature,
    stand_in_invoker,
)
from rtflow.stages.workers import Invocation, WorkerPool, WorkerStartError, child_env

__all__ = ["LocalExecutor", "LocalRunError", "stage_environment"]

if TYPE_CHECKING:
    from rtflow.gpu.triton_server import TritonServer


class LocalRunError(RuntimeError):
    """The run cannot start (a container stage without a stand-in, a stage that cannot load)."""


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
            runnable = ("function", "approval", "inference", "http")
            if stage.name in self.stand_ins or kind in runnable:
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
            elif stage.kind == "http":  # rtflow.http: the call itself, made here
                self._invokers[stage.name] = HttpStep(stage, self.stage_env.get(stage.name, {}))
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
