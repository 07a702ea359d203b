"""The value types a stage can take and give.

Argo parameters are strings. rtflow keeps the Python type of each one so that a float output can
not silently feed a dict input: the compiler checks every edge, and the stage runtime converts the
string back to the declared type. JSON is the wire form for every type.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["str", "int", "float", "bool", "dict", "list"]
_SCALARS: dict[object, Kind] = {str: "str", int: "int", float: "float", bool: "bool"}
SUPPORTED = "str, int, float, bool, dict or list[...]"


@dataclass(frozen=True)
class ParamType:
    """A parameter's type; ``item`` is the element type of a list, when declared."""

    kind: Kind
    item: ParamType | None = None

    def __str__(self) -> str:
        if self.kind == "list" and self.item is not None:
            return f"list[{self.item}]"
        return self.kind

    def accepts(self, source: ParamType) -> bool:
        """Whether a value of ``source`` type may feed a parameter of this type."""
        if self.kind == source.kind:
            if self.kind != "list" or self.item is None or source.item is None:
                return True
            return self.item.accepts(source.item)
        return self.kind == "float" and source.kind == "int"

    def accepts_value(self, value: object) -> bool:
        """Whether a Python literal is a value of this type (used for defaults and constants)."""
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.kind == "float":
            # NaN and infinity have no JSON spelling: Argo and every stage would read a string.
            return (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        if self.kind == "str":
            return isinstance(value, str)
        if self.kind == "dict":
            return isinstance(value, dict) and _is_json(value)
        if not isinstance(value, (list, tuple)) or not _is_json(list(value)):
            return False
        return self.item is None or all(self.item.accepts_value(v) for v in value)


def mismatch(value: object, param_type: ParamType) -> str:
    """Why ``value`` is not a value of ``param_type``, for an error message."""
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number (NaN and infinity have no JSON form)"
    return f"{value!r} is not a {param_type}"


def from_annotation(annotation: object) -> ParamType | None:
    """The ParamType of a Python annotation, or None when rtflow cannot carry it."""
    if annotation in _SCALARS:
        return ParamType(_SCALARS[annotation])
    if annotation is dict or annotation is typing.Dict:  # noqa: UP006
        return ParamType("dict")
    if annotation is list or annotation is typing.List:  # noqa: UP006
        return ParamType("list")
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is dict:
        return ParamType("dict")
    if origin is list and len(args) == 1:
        item = from_annotation(args[0])
        return ParamType("list", item) if item is not None else None
    if origin is typing.Annotated and args:
        return from_annotation(args[0])
    if isinstance(annotation, types.GenericAlias):
        return None
    return None


def list_of(item: ParamType) -> ParamType:
    return ParamType("list", item)


def encode(value: Any) -> str:
    """The Argo parameter text of a Python value: strings as they are, all else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def decode(text: str, param_type: ParamType) -> Any:
    """The Python value of Argo parameter text; ValueError when it is not of the type."""
    if param_type.kind == "str":
        return text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{text[:80]!r} is not JSON for a {param_type}") from exc
    if param_type.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not param_type.accepts_value(value):
        raise ValueError(f"{text[:80]!r} is not a {param_type}")
    return value


def _is_json(value: object) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
