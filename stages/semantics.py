"""What Argo and Argo Events would decide, computed locally from the IR.

Pure functions, shared by the local executor and its tests:

* ``when``: the compiled expression is govaluate over text substituted into the template
  (:func:`rtflow.generators.argo_expressions.condition`). A quoted comparison compares the two
  texts as strings; an unquoted one reads each text as a govaluate literal (a number, or
  ``true``/``false``), so ``0.95 > 0.9`` is numeric and ``true == true`` boolean.
* ``depends``: a task named in ``depends`` counts as done when it Succeeded or was Skipped;
  when one Failed or was Omitted, the dependant is Omitted.
* outputs of a task that was skipped or omitted: its template's producer default (an
  approval's decision: the approval's default). Without one, Argo v4 fails whatever reads it,
  a quoted ``when`` included (an *absent optional*; Argo 3 left the tag's text, which rtflow
  used to copy: the real controller showed the difference).
* fan-out aggregation: the list of the children's output texts, as JSON values when every one
  parses as JSON, else as strings (Argo's rule for ``tasks.X.outputs.parameters.Y``).
* retries: the policy decides by the phase of the last attempt (Failed: the main container
  exited non-zero; Error: it could not run), the function-stage expression excludes exit code
  65, and the backoff waits ``duration * factor**n``; with ``max_duration`` Argo stops once the
  next wait would end after the first attempt's start plus ``max_duration``.
* inputs from an event: the trigger's dotted paths (gjson's plain subset) into
  ``{"body": ..., <metadata>}``; a string value is taken bare, anything else as JSON text.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal

from rtflow import ir
from rtflow.param_types import decode, encode
from rtflow.quantity import parse_go_duration
from rtflow.stages import event_values

Phase = Literal["Succeeded", "Failed", "Error", "Skipped", "Omitted"]
DONE_PHASES: frozenset[str] = frozenset({"Succeeded", "Skipped"})


class ConditionError(ValueError):
    """The expression Argo would evaluate is not valid (Argo errors the task)."""


class ValueMissing(KeyError):
    """A referenced output does not exist (its task was skipped or omitted and its template
    has no producer default for it): Argo cannot resolve the tag."""


def producer_defaults(pipeline: ir.Pipeline, tasks: Sequence[ir.Task]) -> dict[str, dict[str, str]]:
    """Per task, the outputs its template declares a default for (``valueFrom.default``): an
    approval's decision, which is then the approval's ``on_timeout``, else its default."""
    defaults = {}
    for task in tasks:
        approval = pipeline.stage(task.stage).approval
        if approval is not None:
            defaults[task.name] = {"decision": approval.unanswered}
    return defaults


def readable_outputs(
    results: Mapping[str, tuple[str, Mapping[str, str]]],
    defaults: Mapping[str, Mapping[str, str]],
) -> dict[str, dict[str, str]]:
    """What later tasks may read, by task: a Succeeded task's outputs; a Skipped or Omitted
    task's producer defaults (Argo's scope for a node that never ran)."""
    readable: dict[str, dict[str, str]] = {}
    for name, (phase, outputs) in results.items():
        if phase == "Succeeded":
            readable[name] = dict(outputs)
        elif phase in ("Skipped", "Omitted") and name in defaults:
            readable[name] = dict(defaults[name])
    return readable


# -- values and conditions ----------------------------------------------------------------------


def value_text(
    v: ir.Value,
    *,
    inputs: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]],
    workflow: Mapping[str, str],
    item: str | None = None,
) -> str:
    """The text Argo substitutes for a value's tag."""
    if isinstance(v, ir.Constant):
        return v.text
    if isinstance(v, ir.PipelineInput):
        return inputs[v.name]
    if isinstance(v, ir.TaskOutput):
        try:
            return outputs[v.task][v.output]
        except KeyError:
            raise ValueMissing(f"tasks.{v.task}.outputs.parameters.{v.output}") from None
    if isinstance(v, ir.Item):
        if item is None:
            raise ValueMissing("item")
        return item
    if isinstance(v, ir.JsonObject):
        parts = [
            json.dumps(k)
            + ":"
            + value_text(f, inputs=inputs, outputs=outputs, workflow=workflow, item=item)
            for k, f in v.fields
        ]
        return "{" + ",".join(parts) + "}"
    if isinstance(v, ir.JsonList):
        items = [
            value_text(i, inputs=inputs, outputs=outputs, workflow=workflow, item=item)
            for i in v.items
        ]
        return "[" + ",".join(items) + "]"
    if isinstance(v, ir.JsonString):
        text = value_text(v.value, inputs=inputs, outputs=outputs, workflow=workflow, item=item)
        return go_json_string(text)
    if isinstance(v, ir.TensorData):
        answer = value_text(v.answer, inputs=inputs, outputs=outputs, workflow=workflow, item=item)
        return go_json_value(tensor_data(answer, v.tensor))
    return workflow[v.field]


def tensor_data(answer: Any, tensor: str) -> Any:
    """The ``data`` of output ``tensor`` in a KServe v2 answer (its JSON text or its value);
    ConditionError when there is none (Argo's expression fails the task: "cannot fetch data
    from <nil>")."""
    parsed = json.loads(answer) if isinstance(answer, str) else answer
    found = parsed.get("outputs") if isinstance(parsed, dict) else None
    for output in found if isinstance(found, list) else ():
        if isinstance(output, dict) and output.get("name") == tensor and "data" in output:
            return output["data"]
    raise ConditionError(f"the inference answer has no output {tensor!r}")


def go_json_value(value: Any) -> str:
    """``json.Marshal`` of what expr's ``fromJSON`` made of a JSON value, as Argo's ``toJson``
    writes it: every number a float64 (so an integer past 2**53 is rounded, as in the cluster),
    printed the way Go prints it; keys sorted; strings as :func:`go_json_string`."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return _go_float(float(value))
    if isinstance(value, str):
        return go_json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(go_json_value(v) for v in value) + "]"
    items = sorted(value.items())
    return "{" + ",".join(f"{go_json_string(k)}:{go_json_value(v)}" for k, v in items) + "}"


_EXPONENT = re.compile(r"e([+-])0*(\d)")


def _go_float(number: float) -> str:
    """Go's encoding/json float64: shortest round-trip digits, plain notation between 1e-6 and
    1e21, else an exponent without leading zeros (``1e-7``, ``1e+21``)."""
    size = abs(number)
    if size != 0 and (size < 1e-6 or size >= 1e21):
        return _EXPONENT.sub(r"e\1\2", repr(number))
    plain = format(Decimal(repr(number)), "f")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def go_json_string(text: str) -> str:
    """``json.Marshal`` of a Go string, as Argo's ``toJson`` writes it: UTF-8 kept, ``<``, ``>``,
    ``&``, U+2028 and U+2029 escaped (Go's HTML-safe default), so the local run substitutes the
    bytes the controller would."""
    return json.dumps(text, ensure_ascii=False).translate(_GO_ESCAPES)


_NUMBER = re.compile(r"^-?[0-9]+(\.[0-9]+)?$")


def literal(text: str) -> float | bool:
    """A substituted text as govaluate reads it unquoted: a number or a boolean."""
    if text in ("true", "false"):
        return text == "true"
    if _NUMBER.match(text):
        return float(text)
    raise ConditionError(f"{text!r} is not a number or boolean in an unquoted comparison")


def compare(left: Any, op: str, right: Any) -> bool:
    if op == "==":
        return bool(type(left) is type(right) and left == right)
    if op == "!=":
        return not (type(left) is type(right) and left == right)
    if type(left) is not type(right) or isinstance(left, bool):
        raise ConditionError(f"{left!r} {op} {right!r} needs two numbers or two strings")
    if op == ">":
        return bool(left > right)
    if op == ">=":
        return bool(left >= right)
    if op == "<":
        return bool(left < right)
    return bool(left <= right)


def evaluate(
    c: ir.Condition,
    *,
    inputs: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]],
    workflow: Mapping[str, str],
    item: str | None = None,
) -> bool:
    def text(v: ir.Value) -> str:
        return value_text(v, inputs=inputs, outputs=outputs, workflow=workflow, item=item)

    def walk(node: ir.Condition) -> bool:
        if isinstance(node, ir.Compare):
            if node.quoted:
                # An output of a skipped task with no producer default is an absent optional:
                # ValueMissing here, an Error of the task in Argo v4 (not the tag's text).
                left, right = text(node.left), text(node.right)
                if "'" in left or "'" in right:
                    raise ConditionError("a quoted value contains a single quote")
                return compare(left, node.op, right)
            left, right = text(node.left), text(node.right)
            return compare(literal(left), node.op, literal(right))
        if isinstance(node, ir.Not):
            return not walk(node.part)
        if isinstance(node, ir.AllOf):
            return all(walk(p) for p in node.parts)
        return any(walk(p) for p in node.parts)

    return walk(c)


def depends_state(task: ir.Task, phases: Mapping[str, Phase]) -> Literal["wait", "run", "omit"]:
    """Whether a task waits, may run, or is omitted, by the phases of what it depends on."""
    if any(d not in phases for d in task.depends):
        return "wait"
    return "run" if all(phases[d] in DONE_PHASES for d in task.depends) else "omit"


def aggregate(texts: Sequence[str]) -> str:
    """A fanned-out task's output: the JSON list of its children's outputs, in item order."""
    parsed: list[Any] = []
    for text in texts:
        try:
            parsed.append(json.loads(text))
        except ValueError:
            return json.dumps(list(texts), separators=(",", ":"))
    return json.dumps(parsed, separators=(",", ":"), sort_keys=True)


def fan_out_items(text: str) -> list[str]:
    """The ``{{item}}`` texts of a withParam list: strings bare, other values as JSON."""
    try:
        items = json.loads(text)
    except ValueError:
        raise ConditionError(f"withParam value {text[:80]!r} is not a JSON list") from None
    if not isinstance(items, list):
        raise ConditionError(f"withParam value {text[:80]!r} is not a JSON list")
    return [encode(i) for i in items]


# -- retries --------------------------------------------------------------------------------------


def seconds(duration: str) -> float:
    """An Argo duration: a Go duration ('500ms', '1m30s') or bare seconds ('5')."""
    text = duration.strip()
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(Decimal(text))
    return float(parse_go_duration(text))


def should_retry(retry: ir.Retry | None, kind: ir.StageKind, phase: Phase, exit_code: int) -> bool:
    """Argo's decision after a failed attempt, before counting the limit or the backoff."""
    if retry is None or retry.limit <= 0:
        return False
    policy_allows = {
        "Always": phase in ("Failed", "Error"),
        "OnFailure": phase == "Failed",
        "OnError": phase == "Error",
        "OnTransientError": phase == "Error",
    }[retry.policy]
    if not policy_allows:
        return False
    return not (kind == "function" and exit_code == 65)


def backoff_wait(retry: ir.Retry, retries_done: int, *, elapsed_since_first: float) -> float | None:
    """Seconds to wait before retry number ``retries_done + 1``; None when Argo gives up."""
    if retries_done >= retry.limit:
        return None
    backoff = retry.backoff
    if backoff is None:
        return 0.0
    wait = seconds(backoff.duration) * math.pow(max(backoff.factor, 1), retries_done)
    if backoff.max_duration is not None and elapsed_since_first + wait > seconds(
        backoff.max_duration
    ):
        return None
    return wait


# -- event payloads -----------------------------------------------------------------------------

_UNSUPPORTED_PATH = re.compile(r"[#@*?|]")


class PayloadError(ValueError):
    """The event does not fit the pipeline's inputs: it goes to the dead-letter output."""


def lookup(document: Any, path: str) -> tuple[bool, Any]:
    """gjson's dotted subset: keys split at unescaped dots, array indices as numbers."""
    if _UNSUPPORTED_PATH.search(path):
        raise ValueError(f"payload path {path!r} uses gjson syntax the local run does not support")
    keys = [k.replace("\\.", ".") for k in re.split(r"(?<!\\)\.", path)]
    node = document
    for key in keys:
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return False, None
    return True, node


def event_inputs(
    pipeline: ir.Pipeline, body: Any, metadata: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """The pipeline's input texts for one event, checked against their types.

    With a trigger, its mapping reads the event ``{"body": body, **metadata}``; without one, the
    body's top-level keys are the inputs. Defaults fill the rest; PayloadError says what is wrong.
    """
    texts: dict[str, str] = {}
    if pipeline.triggers:
        event = {**(metadata or {}), "body": body}
        for mapping in pipeline.triggers[0].inputs:
            found, value = (False, None)
            if mapping.path is not None:
                found, value = lookup(event, mapping.path)
            if found:  # the text the Sensor gives the Workflow parameter
                texts[mapping.input] = event_values.argo_text(value)
            elif mapping.default is not None:
                texts[mapping.input] = mapping.default
            elif mapping.path is not None:
                raise PayloadError(f"the event has no {mapping.path!r} (input {mapping.input!r})")
    else:
        if not isinstance(body, Mapping):
            raise PayloadError(
                f"the event is a {type(body).__name__}; without a trigger it must be a JSON "
                "object whose keys are the pipeline's inputs"
            )
        known = {p.name for p in pipeline.inputs}
        unknown = sorted(set(body) - known)
        if unknown:
            raise PayloadError(f"the pipeline has no input {unknown[0]!r}")
        texts = {k: encode(v) for k, v in body.items()}
    for param in pipeline.inputs:
        if param.name not in texts:
            if param.default is None:
                raise PayloadError(f"input {param.name!r} ({param.type}) is missing")
            texts[param.name] = param.default
        try:
            decode(texts[param.name], param.type)
        except ValueError as exc:
            raise PayloadError(f"input {param.name!r}: {exc}") from None
    return texts


# -- trigger filters ----------------------------------------------------------------------------

_EXPR_TOKEN = re.compile(
    r"\s*(?:(?P<name>f[0-9]+)|(?P<number>-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)"
    r'|(?P<string>"(?:[^"\\]|\\.)*")|(?P<bool>true|false)'
    r"|(?P<op>==|!=|>=|<=|&&|\|\||[<>!()]))"
)
_PYTHON_OPS = {"&&": " and ", "||": " or ", "!": " not "}


def _data_filter_passes(f: ir.DataFilter, event: Any) -> bool:
    """Argo Events' data filter: gjson's coercions of the value (rtflow.stages.event_values),
    not a type check; a path the event lacks fails."""
    found, value = lookup(event, f.path)
    if not found:
        return False
    if f.type == "string":
        text = event_values.filter_text(value)
        matched = any(re.search(pattern, text) for pattern in f.values)
        return matched if f.comparator == "=" else not matched
    if f.type == "bool":
        flag = event_values.filter_bool(value)
        equal = any(flag == (v == "true") for v in f.values)
        return equal if f.comparator == "=" else not equal
    if not isinstance(value, int | float) or isinstance(value, bool):
        value = event_values.filter_float(value)
    targets = [float(v) for v in f.values]
    try:
        number = float(value)  # gjson reads every JSON number as a double
    except OverflowError:
        raise ValueError(
            f"{f.path} is a number of {len(str(abs(value)))} digits, out of range for the "
            "double Argo Events compares it as"
        ) from None
    if f.comparator == "!=":
        return all(compare(number, "!=", t) for t in targets)
    op = "==" if f.comparator == "=" else f.comparator
    return any(compare(number, op, t) for t in targets)


def expr_filter_passes(f: ir.ExprFilter, event: Any) -> bool:
    values: dict[str, Any] = {}
    for path, name in f.fields:
        found, value = lookup(event, path)
        if not found:
            return False
        values[name] = value
    python: list[str] = []
    position = 0
    text = f.expr.strip()
    while position < len(text):
        match = _EXPR_TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise ValueError(f"filter expression {f.expr!r} has an unexpected token at {position}")
        position = match.end()
        kind = match.lastgroup
        token = match.group(kind or 0)
        if kind == "op":
            python.append(_PYTHON_OPS.get(token, f" {token} "))
        elif kind == "bool":
            python.append("True" if token == "true" else "False")
        elif kind == "string":
            python.append(repr(json.loads(token)))
        else:
            python.append(token)
    try:
        # Only the tokens above reach eval: names are the filter's own fields, no builtins.
        return bool(eval("".join(python), {"__builtins__": {}}, values))
    except TypeError:
        return False  # a comparison across types is false, as in govaluate


def trigger_passes(trigger: ir.Trigger, body: Any, metadata: Mapping[str, Any] | None) -> bool:
    """Whether the Sensor would start a run for this event: every data filter (and) and every
    expression filter must hold; a path the event lacks fails its filter."""
    event = {**(metadata or {}), "body": body}
    return all(_data_filter_passes(f, event) for f in trigger.data_filters) and all(
        expr_filter_passes(f, event) for f in trigger.expr_filters
    )
