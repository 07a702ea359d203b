"""A pipeline's DAG as Mermaid flowchart text: renders on GitHub, so a review sees the shape."""

from __future__ import annotations

from rtflow import ir
from rtflow.generators import argo_expressions


def flowchart(pipeline: ir.Pipeline) -> str:
    stages = {s.name: s for s in pipeline.stages}
    lines = ["flowchart TD"]
    for param in pipeline.inputs:
        lines.append(f'    input_{_id(param.name)}[/"{param.name}: {param.type}"/]')
    for task in (*pipeline.tasks, *pipeline.exit_tasks):
        lines.append(f"    {_node(task, stages[task.stage])}")
    for task in pipeline.tasks:
        label = _edge_label(task)
        for dependency in task.depends:
            lines.append(f"    {_id(dependency)} -->{label} {_id(task.name)}")
        for _, value in task.arguments:
            if isinstance(value, ir.PipelineInput):
                lines.append(f"    input_{_id(value.name)} -.-> {_id(task.name)}")
    if pipeline.exit_tasks:
        lines.append('    subgraph on_exit["on exit"]')
        lines += [f"        {_id(t.name)}" for t in pipeline.exit_tasks]
        lines.append("    end")
        for task in pipeline.exit_tasks:
            for dependency in task.depends:
                lines.append(f"    {_id(dependency)} --> {_id(task.name)}")
    return "\n".join(dict.fromkeys(lines)) + "\n"


def _id(name: str) -> str:
    return name.replace("-", "_")


def _node(task: ir.Task, stage: ir.Stage) -> str:
    text = task.name if task.name == stage.name else f"{task.name} ({stage.name})"
    if stage.kind == "approval":
        return f'{_id(task.name)}{{{{"{text}: approval"}}}}'
    if task.fan_out is not None:
        return f'{_id(task.name)}[["{text}: for each"]]'
    return f'{_id(task.name)}["{text}"]'


def _edge_label(task: ir.Task) -> str:
    if task.when is None:
        return ""
    text = argo_expressions.condition(task.when)
    text = text.replace("{{tasks.", "").replace("{{workflow.parameters.", "").replace("}}", "")
    text = text.replace(".outputs.parameters.", ".").replace('"', "'")
    return f'|"{text}"|'
