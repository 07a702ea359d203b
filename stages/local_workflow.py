"""One event's local run, as Argo runs a Workflow: the DAG, ``when``, ``withParam``, retries
with backoff, deadlines, approvals and the exit handler.

What Argo would decide follows :mod:`rtflow.stages.semantics`; this module walks one event's
tasks through it on the executor's threads (:mod:`rtflow.stages.local_executor`) and returns an
:class:`~rtflow.stages.local_results.EventResult`. Its log lines (a retried task, and why) are
the ``rtflow.local`` logger's, as they were when this lived in :mod:`rtflow.stages.local`.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rtflow import ir
from rtflow.stages import semantics
from rtflow.stages.approvals import ApprovalRequest, ask_within
from rtflow.stages.inference import is_grpc_inference
from rtflow.stages.local_results import EventResult, TaskResult, WorkflowStatus
from rtflow.stages.semantics import Phase

if TYPE_CHECKING:
    from rtflow.stages.local_executor import LocalExecutor

_log = logging.getLogger("rtflow.local")


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
            return self._approval(task, stage, deadline)
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
            elif stage.http is not None:
                own = stage.http.timeout_seconds
            if own is not None:
                timeout = min(timeout, float(own))
            result = invoke(raw, timeout, context)
            attempts += 1
            worker = stage.name not in self.x.stand_ins and stage.kind not in ("inference", "http")
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

    def _approval(self, task: ir.Task, stage: ir.Stage, deadline: float) -> TaskResult:
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
            timeout_seconds=approval.timeout_seconds,
            on_timeout=approval.unanswered,
        )
        try:
            answer = ask_within(self.x.approver, request, deadline - time.monotonic())
        except Exception as exc:
            return TaskResult("Failed", attempts=1, error=f"approval failed: {exc}")
        finally:
            self.x.timings.add(stage.name, (time.perf_counter() - started) * 1000)
        if answer.deadline_passed:  # the workflow's deadline came first: Argo fails the run
            return TaskResult("Failed", attempts=1, error="the pipeline deadline was exceeded")
        if answer.timed_out:
            _log.warning(
                "event %s: approval %s unanswered after %d s; decision %r (on_timeout)",
                self.event_id, task.name, approval.timeout_seconds, answer.decision,
                extra={"event_id": self.event_id, "trace_id": self.trace_id, "task": task.name},
            )  # fmt: skip
        decision = answer.decision
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
