"""IR values and conditions as Argo template tags and ``when`` expressions."""

from __future__ import annotations

import json

from rtflow import ir


def value(v: ir.Value) -> str:
    if isinstance(v, ir.Constant):
        return v.text
    if isinstance(v, ir.PipelineInput):
        return f"{{{{workflow.parameters.{v.name}}}}}"
    if isinstance(v, ir.TaskOutput):
        if v.result:
            return f"{{{{tasks.{v.task}.outputs.result}}}}"
        return f"{{{{tasks.{v.task}.outputs.parameters.{v.output}}}}}"
    if isinstance(v, ir.Item):
        return "{{item}}"
    if isinstance(v, ir.JsonObject):
        return "{" + ",".join(f"{json.dumps(k)}:{value(f)}" for k, f in v.fields) + "}"
    if isinstance(v, ir.JsonList):
        return "[" + ",".join(value(item) for item in v.items) + "]"
    if isinstance(v, ir.JsonString):
        # Argo evaluates the expression and pastes json.Marshal of the result: the text
        # quoted and escaped, so a message with quotes or newlines stays one JSON string.
        return f"{{{{=toJson({expression_path(v.value)})}}}}"
    if isinstance(v, ir.TensorData):
        # expr's fromJSON/find over the answer's text; Argo writes json.Marshal of the data
        answer = expression_path(v.answer)
        pick = f"find(fromJSON({answer}).outputs, .name == {_quoted(v.tensor)})"
        return f"{{{{=toJson({pick}.data)}}}}"
    return f"{{{{workflow.{v.field}}}}}"


def expression_path(v: ir.PipelineInput | ir.TaskOutput | ir.WorkflowField) -> str:
    """The value as a variable of Argo's expression language (expr): task and parameter names
    may hold dashes, so they are indexed with brackets, not dotted."""
    if isinstance(v, ir.PipelineInput):
        return f"workflow.parameters[{_quoted(v.name)}]"
    if isinstance(v, ir.TaskOutput):
        if v.result:
            return f"tasks[{_quoted(v.task)}].outputs.result"
        return f"tasks[{_quoted(v.task)}].outputs.parameters[{_quoted(v.output)}]"
    return f"workflow.{v.field}"


def _quoted(name: str) -> str:
    # DNS-1123 task names and identifier-like parameter names: no quote to escape
    return f"'{name}'"


def condition(c: ir.Condition) -> str:
    """A govaluate expression, as Argo's ``when`` evaluates it after substituting the tags."""
    if isinstance(c, ir.Compare):
        left, right = value(c.left), value(c.right)
        if c.quoted:
            left, right = f"'{left}'", f"'{right}'"
        return f"{left} {c.op} {right}"
    if isinstance(c, ir.Not):
        return f"!({condition(c.part)})"
    joiner = " && " if isinstance(c, ir.AllOf) else " || "
    return joiner.join(f"({condition(p)})" for p in c.parts)


def status_condition(codes: tuple[int, ...]) -> str:
    """An http step's ``successCondition`` for a set of status codes (sorted, distinct): each
    run of consecutive codes as one range, ``response.statusCode >= 200 &&
    response.statusCode <= 299``, the runs joined with ``||``."""
    runs: list[tuple[int, int]] = []
    for code in codes:
        if runs and code == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], code)
        else:
            runs.append((code, code))
    status = "response.statusCode"
    parts = [
        f"{status} == {low}" if low == high else f"{status} >= {low} && {status} <= {high}"
        for low, high in runs
    ]
    return parts[0] if len(parts) == 1 else " || ".join(f"({p})" for p in parts)
