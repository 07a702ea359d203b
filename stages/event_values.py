"""How an event's JSON value reaches a typed pipeline input and a trigger filter: Argo Events'
rule, which every plane follows (the stream plane, the local run, the real Sensor).

Read from Argo Events v1.9.11 (``pkg/sensors/triggers/params.go``: ``getValueByKey``) and
gjson v1.19.0 (``Result.String``, ``Float``, ``Bool``), and pinned against the real Sensor by
tests/integration/test_events_typed_inputs.py:

* A trigger parameter is **text** (``sjson.SetBytes`` of a Go string into the Workflow's
  ``arguments.parameters[i].value``): a JSON string gives its characters unquoted, a number
  gjson's ``String()`` (an integer as written, any other number in shortest decimal form
  without an exponent: ``7.0`` -> ``7``, ``1e3`` -> ``1000``), ``true``/``false``/``null`` the
  word, an object or array its JSON text as the Kafka EventSource marshalled it (compact, the
  payload's key order, ``<``, ``>`` and ``&`` escaped as ``\\u003c``...).
* The stage runtime then decodes that text by the input's type
  (:func:`rtflow.param_types.decode`): a ``str`` takes the text as is, any other type takes
  the text as JSON of that type. So ``7`` into ``str`` is ``"7"``, ``"7"`` into ``int`` is
  ``7``, ``7.0`` into ``int`` is ``7``, ``7.5`` into ``int`` and ``true`` into ``int`` are bad
  inputs.

:func:`converter` gives that composition for one type, resolved once per plan: a value whose
Python type already fits passes with one class check (the stream plane's hot path), anything
else goes through the text, exactly as on Argo.

Data filters are gjson's coercions, not type checks: a ``number`` filter reads a string's
number (``"5"`` is 5, ``"abc"`` is 0), ``true`` as 1 and anything else as 0; a ``string``
filter matches its regular expression against the value's ``String()`` (``null`` is the empty
text); a ``bool`` filter reads ``"true"``/``"1"``/``"t"`` (any case) and a non-zero number as
true (:func:`filter_float`, :func:`filter_text`, :func:`filter_bool`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rtflow.param_types import ParamType, decode

__all__ = ["argo_text", "converter", "filter_bool", "filter_float", "filter_text"]

# Go's html-safe JSON (json.Marshal of the EventSource's json.RawMessage body).
_GO_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def number_text(value: int | float) -> str:
    """gjson's ``String()`` of a number: an integer's digits, else Go's
    ``strconv.FormatFloat(f, 'f', -1, 64)``: the shortest decimal that reads back, no exponent."""
    if value.__class__ is int:
        return str(value)
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def argo_text(value: Any) -> str:
    """The text Argo Events' Sensor gives a trigger parameter for a JSON value (``dataKey``)."""
    if value.__class__ is str:
        return str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return number_text(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).translate(_GO_ESCAPES)


Converter = Callable[[Any], Any]


def converter(param_type: ParamType) -> Converter:
    """The value of an input of ``param_type`` for an event's JSON value, as the workflow plane
    gives it: ``decode(argo_text(value), param_type)``; ValueError (the runtime's message) when
    the value does not fit. One class check for a value of the type itself."""
    kind = param_type.kind

    def through_text(value: Any) -> Any:
        return decode(argo_text(value), param_type)

    if kind == "str":
        return lambda value: value if value.__class__ is str else argo_text(value)
    if kind == "float":

        def to_float(value: Any) -> Any:
            cls = value.__class__
            if cls is float:
                return value
            if cls is int:
                return float(value)
            return through_text(value)

        return to_float
    if kind == "list" and param_type.item is not None:
        accepts = param_type.accepts_value

        def to_items(value: Any) -> Any:
            if value.__class__ is list and accepts(value):
                return value
            return through_text(value)

        return to_items
    exact = {"int": int, "bool": bool, "dict": dict, "list": list}[kind]

    def to_kind(value: Any) -> Any:
        if value.__class__ is exact:
            return value
        return through_text(value)

    return to_kind


# -- data filters (gjson's Result.String / Float / Bool) ----------------------------------------

_GO_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_GO_SPECIAL = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def filter_text(value: Any) -> str:
    """What a ``string`` data filter matches: gjson's ``String()`` (``null`` is empty)."""
    return "" if value is None else argo_text(value)


def filter_float(value: Any) -> float:
    """What a ``number`` data filter compares: gjson's ``Float()``. A string is read with Go's
    ``strconv.ParseFloat`` (decimal syntax, ``inf``, ``nan``; anything else is 0); ``true``
    is 1; ``false``, ``null``, objects and arrays are 0."""
    if value is True:
        return 1.0
    if value is False or value is None:
        return 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and (_GO_FLOAT.fullmatch(value) or _GO_SPECIAL.fullmatch(value)):
        return float(value)
    return 0.0


def filter_bool(value: Any) -> bool:
    """What a ``bool`` data filter compares: gjson's ``Bool()``. A string is read with Go's
    ``strconv.ParseBool`` of its lower case (``1``, ``t``, ``true``); a number is true when
    not 0; anything else but ``true`` is false."""
    if value is True or value is False:
        return value
    if isinstance(value, str):
        return value.lower() in ("1", "t", "true")
    if isinstance(value, int | float):
        return value != 0
    return False
