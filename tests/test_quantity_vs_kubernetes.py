"""rtflow.quantity against the kubernetes client's parse_quantity (issue #14 asked to build on it).

rtflow keeps its own parser, for two measured reasons: the client's is laxer than the API
server's grammar (k8s.io/apimachinery resource.Quantity), so it would let through values a sync
then fails on ("1K", " 1", non-ASCII digits); and importing it imports the whole
kubernetes client (about 0.5 s on every compile, which never talks to a cluster otherwise).
These tests hold the two to the same values wherever rtflow accepts a quantity, and pin the
cases where rtflow is stricter on purpose, with the API server's reason.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.utils.quantity import parse_quantity as client_parse

from rtflow.quantity import parse_quantity

SUFFIXES = ["", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]
NUMBERS = st.one_of(
    st.integers(0, 10**9).map(str),
    st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)).map(lambda p: f"{p[0]}.{p[1]}"),
    st.integers(0, 10**6).map(lambda n: f".{n}"),
)
EXPONENTS = st.tuples(st.sampled_from("eE"), st.sampled_from(["", "+", "-"]), st.integers(0, 9))


@given(NUMBERS, st.sampled_from(SUFFIXES))
def test_the_same_value_as_the_kubernetes_client_for_every_si_quantity(
    number: str, suffix: str
) -> None:
    text = number + suffix
    assert parse_quantity(text) == Decimal(client_parse(text))


@given(NUMBERS, EXPONENTS)
def test_the_same_value_for_decimal_exponents(number: str, exponent: tuple[str, str, int]) -> None:
    text = number + "".join(map(str, exponent))
    assert parse_quantity(text) == Decimal(client_parse(text))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1K", "the API server knows k (10^3) and Ki, not K"),
        (" 1", "no whitespace in a quantity"),
        ("1 ", "no whitespace in a quantity"),
        ("+1", "upstream's grammar allows a sign; rtflow takes resources unsigned"),
        ("-1", "a negative container resource is refused by validation"),
        ("\u0661", "only ASCII digits"),
    ],
)
def test_stricter_than_the_client_where_the_api_server_is(text: str, why: str) -> None:
    client_parse(text)  # the client takes it; rtflow does not (see why)
    with pytest.raises(ValueError):
        parse_quantity(text)
