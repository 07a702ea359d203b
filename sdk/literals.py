"""List and dict literals that hold references, and scalars fed to one-element tensors.

``rtflow.infer(..., {"text": [message]})``, ``rank(scored=[s, 2.0])`` and
``send(payload={"u": user_id})`` pass a value that exists only when the pipeline runs inside a
literal. Argo parameters are text, so such a literal compiles to one JSON text that Argo
assembles at run time (:class:`ir.JsonList`, :class:`ir.JsonObject`): each reference's
parameter text is pasted where it belongs. That is valid JSON for what a parameter already
carries as JSON (numbers, booleans, lists, dicts), but not for a ``str``, which Argo carries
raw (``hello``, not ``"hello"``): those are wrapped in :class:`ir.JsonString`, Argo's
``{{=toJson(...)}}``, which quotes and escapes them. The local run and the stream plane read the
same IR (:func:`rtflow.stages.semantics.value_text`, the stream steps' ``value_getter``).

The fan-out item (``rtflow.for_each``) cannot sit in a literal: it is refused with the usual
one-line error.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.param_types import ParamType, list_of
from rtflow.recording import Call, Each, Ref

__all__ = [
    "Resolved",
    "check_feeds",
    "holds_ref",
    "json_constant",
    "resolve_literal",
    "scalar_type",
]


@dataclass
class Resolved:
    """A value a stage argument reads, its type when known (None for a plain constant, checked
    by value), and the calls it reads outputs of (the task depends on them)."""

    value: ir.Value
    type: ParamType | None
    producers: tuple[Call, ...] = ()


def holds_ref(raw: object) -> bool:
    """Whether a list, tuple or dict literal holds a reference (or a fan-out item) anywhere."""
    if isinstance(raw, Ref | Each):
        return True
    if isinstance(raw, list | tuple):
        return any(holds_ref(item) for item in raw)
    if isinstance(raw, Mapping):
        return any(holds_ref(item) for item in raw.values())
    return False


def scalar_type(value: object) -> ParamType | None:
    """The type of a str, int, float or bool literal (a bool is only a bool); None otherwise."""
    if isinstance(value, bool):
        return ParamType("bool")
    if isinstance(value, int):
        return ParamType("int")
    if isinstance(value, float):
        return ParamType("float")
    if isinstance(value, str):
        return ParamType("str")
    return None


def _common(types: list[ParamType | None]) -> ParamType | None:
    """The item type of a list whose items have these types; None when they differ (ints and
    floats together are floats, as JSON reads them)."""
    if not types or any(t is None for t in types):
        return None
    first = types[0]
    assert first is not None
    if all(t == first for t in types):
        return first
    if all(t is not None and t.kind in ("int", "float") and t.item is None for t in types):
        return ParamType("float")
    if all(t is not None and t.kind == first.kind for t in types):
        return ParamType(first.kind)  # lists of differing items: a list
    return None


def json_constant(raw: object, field: str) -> Resolved:
    """A literal without references as JSON text, with its type (a list's item type when its
    items agree); one-line error when it is not JSON (NaN, an object)."""
    try:
        text = json.dumps(raw, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        finite = not isinstance(raw, float) or math.isfinite(raw)
        raise DefinitionError(
            f"the literal holds {raw!r}, which is not a JSON value"
            + ("" if finite else " (NaN and infinity have no JSON form)"),
            fix="use strings, finite numbers, booleans, lists, dicts and stage outputs",
            field=field,
        ) from None
    kind = scalar_type(raw)
    if kind is None and isinstance(raw, dict):
        kind = ParamType("dict")
    elif kind is None and isinstance(raw, list | tuple):
        item = _common([json_constant(v, field).type for v in raw])
        kind = list_of(item) if item is not None else ParamType("list")
    return Resolved(ir.Constant(text), kind)


def resolve_literal(raw: object, resolve: Callable[[Ref], Resolved], field: str) -> Resolved:
    """A list or dict literal holding references, as one JSON value (``resolve`` turns each
    reference into its value, checking where it comes from)."""
    if isinstance(raw, Each):
        raise DefinitionError(
            "the for_each item cannot sit inside a list or dict literal",
            fix="pass the item as the argument itself, e.g. lambda m: review(model=m), and "
            "build the list inside the stage",
            field=field,
        )
    if isinstance(raw, Ref):
        ref = resolve(raw)
        if ref.type is not None and ref.type.kind == "str":
            inner = ref.value
            assert isinstance(inner, ir.PipelineInput | ir.TaskOutput | ir.WorkflowField)
            return Resolved(ir.JsonString(inner), ref.type, ref.producers)
        return ref
    if not holds_ref(raw):
        return json_constant(raw, field)
    if isinstance(raw, list | tuple):
        items = [resolve_literal(item, resolve, f"{field}[{i}]") for i, item in enumerate(raw)]
        item_type = _common([r.type for r in items])
        return Resolved(
            ir.JsonList(tuple(r.value for r in items)),
            list_of(item_type) if item_type is not None else ParamType("list"),
            tuple(p for r in items for p in r.producers),
        )
    assert isinstance(raw, Mapping)
    bad = [k for k in raw if not isinstance(k, str)]
    if bad:
        raise DefinitionError(
            f"the dict literal has the key {bad[0]!r}, but JSON keys are strings",
            fix=f"use the key {str(bad[0])!r}",
            field=field,
        )
    fields = {k: resolve_literal(v, resolve, f"{field}.{k}") for k, v in sorted(raw.items())}
    return Resolved(
        ir.JsonObject(tuple((k, r.value) for k, r in fields.items())),
        ParamType("dict"),
        tuple(p for r in fields.values() for p in r.producers),
    )


def check_feeds(resolved: Resolved, raw: object, param: ir.Param) -> None:
    """That a value may feed ``param``: a plain constant by its value, anything else by its type
    (a list literal's items too); the error names where a reference comes from."""
    if resolved.type is None:
        if not param.type.accepts_value(raw):
            raise DefinitionError(
                f"input {param.name!r} is {param.type} but the value {raw!r} is not",
                fix=f"pass a {param.type}",
                field=param.name,
            )
        return
    if (
        isinstance(resolved.value, ir.JsonList)
        and resolved.type.item is None
        and param.type.item is not None
    ):
        raise DefinitionError(
            f"input {param.name!r} is {param.type} but the list literal mixes types",
            fix=f"give only {param.type.item} items",
            field=param.name,
        )
    if not param.type.accepts(resolved.type):
        raise DefinitionError(
            f"input {param.name!r} is {param.type} but it is fed a {resolved.type}"
            f"{_from_where(resolved.value)}",
            fix=f"make the types agree (change the annotation to {resolved.type}, "
            f"or convert inside a stage)",
            field=param.name,
        )


def _from_where(value: ir.Value) -> str:
    if isinstance(value, ir.TensorData):
        return f" (output {value.tensor!r} of the answer of {_from_where(value.answer)[1:-1]})"
    if isinstance(value, ir.TaskOutput):
        return f" (output {value.output!r} of {value.task!r})"
    if isinstance(value, ir.PipelineInput):
        return f" (pipeline input {value.name!r})"
    return ""
