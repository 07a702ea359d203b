"""Property-based tests: names and quantities are accepted exactly when Kubernetes would."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import rtflow
from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label, is_dns1123_label, suggest_dns1123_label
from rtflow.param_types import ParamType, decode, encode, from_annotation
from rtflow.quantity import check_quantity, parse_go_duration, parse_quantity

# The API server's own patterns, written independently of rtflow.names.
K8S_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
K8S_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")

label_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-")
valid_labels = st.text(label_chars, min_size=1, max_size=63).filter(
    lambda s: s[0] != "-" and s[-1] != "-"
)


@given(valid_labels)
def test_every_valid_label_is_accepted(name: str) -> None:
    assert check_dns1123_label(name, field="name", what="name") == name


@given(st.text(max_size=80))
def test_any_text_is_accepted_iff_kubernetes_accepts_it(name: str) -> None:
    valid = bool(K8S_LABEL.match(name)) and len(name) <= 63
    assert is_dns1123_label(name) == valid
    if valid:
        return
    with pytest.raises(DefinitionError) as caught:
        check_dns1123_label(name, field="name", what="name")
    suggestion = suggest_dns1123_label(name)
    if suggestion is not None:
        assert K8S_LABEL.match(suggestion) and len(suggestion) <= 63
        assert repr(suggestion) in caught.value.fix


@given(st.text(max_size=80))
def test_a_suggested_name_compiles(name: str) -> None:
    suggestion = suggest_dns1123_label(name)
    assume(suggestion is not None)
    assert suggestion is not None

    @rtflow.pipeline(name=suggestion)
    def p() -> None:
        rtflow.container("worker", image="ghcr.io/acme/w:1")()

    assert p.build().name == suggestion


numbers = st.one_of(
    st.integers(min_value=1, max_value=10**9).map(str),
    st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**6), places=3).map(
        lambda d: format(d.normalize(), "f")
    ),
)
suffixes = st.sampled_from(["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti", "e3", "E2"])


@given(numbers, suffixes)
def test_valid_cpu_quantities_are_accepted(number: str, suffix: str) -> None:
    text = number + suffix
    value = parse_quantity(text)
    assume(value > 0)
    assert K8S_QUANTITY.match(text)
    if value * 1000 <= 2**63 - 1:  # what resource.Quantity holds, in millicores
        assert check_quantity(text, kind="cpu", field="cpu") == text
    else:
        with pytest.raises(DefinitionError, match="larger than Kubernetes can hold"):
            check_quantity(text, kind="cpu", field="cpu")


@given(st.text(max_size=12))
def test_text_that_is_not_a_quantity_is_refused_with_the_field(text: str) -> None:
    if K8S_QUANTITY.match(text):
        try:
            parse_quantity(text)
            return  # a real quantity
        except ValueError:
            pass  # the loose pattern admits things like "1.2.3"; those must be refused
    with pytest.raises(DefinitionError) as caught:
        check_quantity(text, kind="memory", field="memory")
    assert caught.value.field == "memory"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500m", Decimal("0.5")),
        ("2", Decimal(2)),
        ("1Ki", Decimal(1024)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1e3", Decimal(1000)),
        ("2k", Decimal(2000)),
    ],
)
def test_quantity_values(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["ms", "s", "m", "h"]))
def test_go_durations(amount: int, unit: str) -> None:
    seconds = {"ms": Decimal("0.001"), "s": 1, "m": 60, "h": 3600}[unit]
    assert parse_go_duration(f"{amount}{unit}") == amount * seconds


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


@given(st.dictionaries(st.text(), json_values, max_size=4))
def test_dicts_round_trip_through_argo_text(value: dict[str, object]) -> None:
    assert decode(encode(value), ParamType("dict")) == value


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_round_trip(value: float) -> None:
    assert decode(encode(value), ParamType("float")) == value


def test_annotations_map_to_types() -> None:
    assert from_annotation(list[dict[str, int]]) == ParamType("list", ParamType("dict"))
    assert from_annotation(set[int]) is None
    assert ParamType("float").accepts(ParamType("int"))
    assert not ParamType("int").accepts(ParamType("float"))
    assert not ParamType("list", ParamType("str")).accepts(ParamType("list", ParamType("int")))
    with pytest.raises(ValueError):
        decode("true", ParamType("int"))
