"""JSON as every reader of an event agrees on it, read and written fast: both planes use this.

**Reading.** An event's body must be JSON that Argo Events' Go reader, a Go or JavaScript stage
and Python read alike (RFC 8259, numbers as IEEE doubles): no NaN or Infinity, no number
beyond a double's range. The rules are Python's ``json`` with strict hooks (:func:`_strict`).
They cost about 3 µs for a fraud event, a tenth of a stream worker's CPU per event, so the
fast path is orjson, whose accepted set is a subset of the strict rules' with the same
values, except for integers beyond 64 bits (orjson reads them as floats): a text with a run of
19 digits, and any text orjson refuses, is decided by the strict rules instead, which also
give the reason. So the answer is the strict rules', only faster, with one exception: orjson
reads nesting up to 1,024 levels, where the strict rules stop near Python's recursion limit
(about 1,000): a body nested 1,000 to 1,024 deep is taken (tested: tests/test_portable_json.py).

**Writing.** What a publish stage sends (either plane: the same bytes for the same payload):
keys sorted, no spaces, UTF-8. NaN and Infinity are refused, not written as ``NaN`` (which no
strict reader takes) nor turned into ``null`` (orjson's choice, a silent change of the value).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import orjson

__all__ = ["dumps", "parse"]

#: The largest magnitude an IEEE double holds: what every JSON reader but Python's turns a number
#: into (Argo Events' gjson, a Go or JavaScript stage), so a number beyond it is not portable JSON.
_FLOAT_MAX = 1.7976931348623157e308

#: orjson reads an integer past 64 bits as a float; a text with a run of 19 digits goes to the
#: strict rules. Found by mapping digits to "0" and all else to " " (bytes.translate, in C: a
#: fifth of a regular expression's time, which was more than orjson's own).
_DIGITS_ONLY = bytes(0x30 if 0x30 <= i <= 0x39 else 0x20 for i in range(256))
_LONG_RUN = b"0" * 19

_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
_WITHOUT_EXTRAS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def parse(raw: bytes | str) -> tuple[Any, str | None]:
    """A message's JSON body, or its text and why it is not a body a pipeline can carry.

    Every failure is named for what it is: not JSON at all, nested deeper than Python's
    recursion limit, a number no double holds (``1e999``, a 400-digit integer: another reader
    would see infinity, and Python's ``float()`` an OverflowError), NaN or Infinity.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if _LONG_RUN not in data.translate(_DIGITS_ONLY):
        try:
            return orjson.loads(data), None
        except orjson.JSONDecodeError:
            pass  # the strict rules say why, or take what orjson does not (a BOM, UTF-16)
    return _strict(raw)


def dumps(value: Any) -> bytes:
    """``value`` as compact JSON with sorted keys; ValueError for NaN or Infinity, TypeError
    for what has no JSON form (a datetime, a dataclass: the stage should say which text it
    means)."""
    try:
        text = orjson.dumps(value, option=_SORTED | _WITHOUT_EXTRAS)
    except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, say; json decides
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=False
        ).encode("utf-8", "surrogatepass")
    # orjson writes NaN and Infinity as null: only a text with a null can hide one.
    if b"null" in text and _non_finite(value):
        raise ValueError("Out of range float values are not JSON compliant (NaN or Infinity)")
    return text


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return value != value or value in (float("inf"), float("-inf"))
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_non_finite(v) for v in value)
    return False


def _strict(raw: bytes | str) -> tuple[Any, str | None]:
    try:
        body = json.loads(
            raw, parse_float=_finite_float, parse_int=_portable_int, parse_constant=_no_constant
        )
    except RecursionError:
        return _text(raw), (
            "the message is nested too deeply to read (deeper than Python's recursion limit, "
            f"{sys.getrecursionlimit()})"
        )
    except UnicodeDecodeError as exc:
        return _text(raw), f"the message is not UTF-8 text: {exc}"
    except json.JSONDecodeError as exc:
        return _text(raw), f"the message is not JSON: {exc}"
    except ValueError as exc:  # from the number and constant checks below
        return _text(raw), f"the message is not portable JSON: {exc}"
    return body, None


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {_short(text)} is out of range for a JSON number (a double)")
    return value


def _portable_int(text: str) -> int:
    value = int(text)
    if abs(value) > _FLOAT_MAX:
        raise ValueError(
            f"the number {_short(text)} ({len(text.lstrip('-'))} digits) is out of range for a "
            "JSON number (a double)"
        )
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON (JSON has no NaN or Infinity)")


def _short(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[: keep // 2]}...{text[-keep // 2 :]}"


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")
