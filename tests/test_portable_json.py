"""Portable JSON: orjson's fast path gives exactly the strict rules' answer (same values, same
refusals with the same reasons), and what a publish writes reads back as the payload, with NaN
and Infinity refused wherever they hide."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtflow.stages import portable_json
from rtflow.stages.portable_json import _strict, dumps, parse

numbers = (
    st.integers(min_value=-(10**30), max_value=10**30)
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats()  # NaN and the infinities too: both paths must refuse them alike
    | st.sampled_from([10**400, -(10**400), 1e308, 5e-324, -0.0])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=12)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 and 1.0 are not the same body)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return math.copysign(1.0, a) == math.copysign(1.0, b) and a == b
    return bool(a == b)


@settings(max_examples=600, deadline=None)
@given(documents, st.booleans(), st.sampled_from(["", " ", "\n\t"]))
def test_the_fast_path_answers_as_the_strict_rules_do(
    document: Any, ascii_only: bool, space: str
) -> None:
    text = json.dumps(document, ensure_ascii=ascii_only, allow_nan=True)
    raw = (space + text + space).encode("utf-8", "surrogatepass")
    fast, strict = parse(raw), _strict(raw)
    assert fast[1] == strict[1]
    assert _same(fast[0], strict[0])


@settings(max_examples=400, deadline=None)
@given(
    st.binary(max_size=40) | st.text(max_size=20).map(lambda t: t.encode("utf-8", "surrogatepass"))
)
def test_any_bytes_get_the_strict_rules_answer(raw: bytes) -> None:
    fast, strict = parse(raw), _strict(raw)
    assert fast[1] == strict[1]
    assert _same(fast[0], strict[0])


@pytest.mark.parametrize(
    "raw",
    [
        b'{"n": 123456789012345678901234}',  # past 64 bits: an int, not orjson's float
        b'{"n": -9223372036854775809}',
        b'\xef\xbb\xbf{"a": 1}',  # a BOM: orjson refuses, Python's reader takes it
        '{"a": 1}'.encode("utf-16"),
        b'"\\ud800"',  # a lone surrogate escape
    ],
)
def test_what_orjson_reads_otherwise_is_decided_by_the_strict_rules(raw: bytes) -> None:
    fast, strict = parse(raw), _strict(raw)
    assert fast[1] == strict[1] is None
    assert _same(fast[0], strict[0])


def test_a_big_integer_stays_an_integer() -> None:
    body, problem = parse(b'{"n": 123456789012345678901234}')
    assert problem is None and body == {"n": 123456789012345678901234}
    assert isinstance(body["n"], int)


@settings(max_examples=400, deadline=None)
@given(documents)
def test_a_payload_reads_back_as_itself_or_is_refused_for_nan(document: Any) -> None:
    payload = {"value": document, "id": "x"}
    try:
        text = dumps(payload)
    except ValueError:
        written = json.dumps(payload)
        assert "NaN" in written or "Infinity" in written, "refused only for NaN or Infinity"
        return
    back = json.loads(text)
    assert back == json.loads(json.dumps(payload, sort_keys=True)), text
    assert list(back) == sorted(back)


@pytest.mark.parametrize(
    "payload",
    [{"x": float("nan")}, {"a": [1, {"b": float("inf")}]}, {"a": None, "b": -math.inf}],
)
def test_nan_and_infinity_are_refused_not_written_as_null(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="NaN or Infinity"):
        dumps(payload)


def test_a_real_null_is_written() -> None:
    assert dumps({"b": None, "a": 1}) == b'{"a":1,"b":null}'


def test_what_json_cannot_write_is_a_type_error() -> None:
    import datetime

    with pytest.raises(TypeError):
        dumps({"when": datetime.datetime(2026, 1, 1)})
    assert json.loads(dumps({"n": 2**70})) == {"n": 2**70}


def test_text_is_written_as_utf8_with_sorted_keys() -> None:
    assert dumps({"é": "ü", "a": [1.5, True]}) == '{"a":[1.5,true],"é":"ü"}'.encode()
    assert portable_json.dumps({1: "x"}) == b'{"1":"x"}'


def test_nesting_is_read_to_orjson_s_depth_and_refused_past_it() -> None:
    assert parse(b"[" * 1000 + b"]" * 1000)[1] is None
    _, problem = parse(b"[" * 1025 + b"]" * 1025)
    assert problem is not None and "nested too deeply" in problem
