"""A pipeline's DAG as Mermaid flowchart text: renders on GitHub, so a review sees the shape.

Conditions are written on the node they guard, in words a reviewer reads ("score.risk > 0.9
and ..."), not as Argo template tags.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from rtflow import ir
from rtflow.stream_ir import value_refs


def flowchart(pipeline: ir.Pipeline) -> str:
    stages = {s.name: s for s in pipeline.stages}
    lines = ["flowchart TD"]
    for trigger in pipeline.triggers:
        lines.append(f'    on_{_id(trigger.name)}(["{_trigger_label(trigger)}"])')
    for param in pipeline.inputs:
        lines.append(f'    in_{_id(param.name)}[/"{param.name}: {param.type}"/]')
    for trigger in pipeline.triggers:
        lines += [f"    on_{_id(trigger.name)} --> in_{_id(m.input)}" for m in trigger.inputs]
    for task in (*pipeline.tasks, *pipeline.exit_tasks):
        lines.append(f"    {_node(task, stages[task.stage])}")
    for task in pipeline.tasks:
        lines += [f"    {_id(d)} --> {_id(task.name)}" for d in task.depends]
        lines += [
            f"    in_{_id(v.name)} -.-> {_id(task.name)}"
            for _, argument in task.arguments
            for v in value_refs(argument)  # inputs inside a list or dict literal too
            if isinstance(v, ir.PipelineInput)
        ]
    if pipeline.exit_tasks:
        lines.append('    subgraph on_exit["on exit"]')
        lines += [f"        {_id(t.name)}" for t in pipeline.exit_tasks]
        lines.append("    end")
        for task in pipeline.exit_tasks:
            lines += [f"    {_id(d)} --> {_id(task.name)}" for d in task.depends]
    return "\n".join(dict.fromkeys(lines)) + "\n"


def _trigger_label(trigger: ir.Trigger) -> str:
    source = trigger.source
    if isinstance(source, ir.KafkaSource):
        return f"kafka topic {source.topic}"
    if isinstance(source, ir.WebhookSource):
        return f"{source.method} {source.endpoint}"
    return f"every {source.interval}" if source.interval else f"cron {source.schedule}"


def _id(name: str) -> str:
    return name.replace("-", "_")


def _node(task: ir.Task, stage: ir.Stage) -> str:
    text = task.name if task.name == stage.name else f"{task.name} ({stage.name})"
    if stage.kind == "approval":
        text += ": approval"
    if stage.http is not None:  # rtflow.http: the method and where it goes
        text += f": {stage.http.method} {urlsplit(stage.http.url).netloc}"
    if task.fan_out is not None:
        text += f": for each of {_items(task.fan_out)}"
    if task.when is not None:
        text += f"<br/>when {_condition(task.when)}"
    text = text.replace('"', "#quot;")
    if stage.kind == "approval":
        return f'{_id(task.name)}{{{{"{text}"}}}}'
    if task.fan_out is not None:
        return f'{_id(task.name)}[["{text}"]]'
    return f'{_id(task.name)}["{text}"]'


def _items(v: ir.Value) -> str:
    if isinstance(v, ir.Constant):
        return ", ".join(str(item) for item in json.loads(v.text))
    return _value(v)


def _value(v: ir.Value) -> str:
    if isinstance(v, ir.Constant):
        return v.text
    if isinstance(v, ir.PipelineInput):
        return v.name
    if isinstance(v, ir.TaskOutput):
        return f"{v.task}.{v.output}"
    if isinstance(v, ir.Item):
        return "item"
    if isinstance(v, ir.JsonObject):
        return "{" + ", ".join(f"{k}: {_value(f)}" for k, f in v.fields) + "}"
    if isinstance(v, ir.JsonList):
        return "[" + ", ".join(_value(i) for i in v.items) + "]"
    if isinstance(v, ir.JsonString):
        return _value(v.value)
    if isinstance(v, ir.TensorData):
        return f"{_value(v.answer)}.{v.tensor}"
    return f"workflow.{v.field}"


def _condition(c: ir.Condition) -> str:
    if isinstance(c, ir.Compare):
        right = f"'{_value(c.right)}'" if c.quoted and isinstance(c.right, ir.Constant) else None
        return f"{_value(c.left)} {c.op} {right or _value(c.right)}"
    if isinstance(c, ir.Not):
        return f"not ({_condition(c.part)})"
    joiner = " and " if isinstance(c, ir.AllOf) else " or "
    return joiner.join(
        _condition(p) if isinstance(p, ir.Compare) else f"({_condition(p)})" for p in c.parts
    )
