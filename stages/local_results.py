"""What one event's local run produced: each task's result, and the workflow's.

A :class:`TaskResult` is one task's phase, outputs and attempts, as Argo would record them on
the Workflow's node; an :class:`EventResult` is the whole run of one event (a "workflow"), which
the event router (:mod:`rtflow.stages.event_routing`) writes as an output line or a dead letter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from rtflow import ir
from rtflow.param_types import decode
from rtflow.stages.semantics import Phase

__all__ = ["EventResult", "TaskResult", "WorkflowStatus"]

WorkflowStatus = Literal["Succeeded", "Failed"]


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
