"""Local runs drop what the Sensor would drop: the trigger's data and expression filters."""

from __future__ import annotations

from typing import Any

import pytest
from local_pipelines import filtered

from rtflow.stages import semantics
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local


@pytest.mark.parametrize(
    ("body", "passes"),
    [
        ({"kind": "buy", "amount": 11, "vip": True}, True),
        ({"kind": "sell.x", "amount": 50.5, "vip": True}, True),
        ({"kind": "sellxx", "amount": 50, "vip": True}, False),  # '.' is literal, anchored
        ({"kind": "buyer", "amount": 50, "vip": True}, False),  # anchored: no prefix match
        ({"kind": "buy", "amount": 10, "vip": True}, False),
        # gjson's Float(), as the real Sensor (tests/integration/test_events_typed_inputs.py):
        # a string's number counts, a string that is not one is 0
        ({"kind": "buy", "amount": "11", "vip": True}, True),
        ({"kind": "buy", "amount": "lots", "vip": True}, False),
        ({"kind": "buy", "amount": 11, "vip": False}, False),
        ({"kind": "buy", "amount": 11}, False),  # a missing path fails its filter
    ],
)
def test_data_filters(body: dict[str, Any], passes: bool) -> None:
    (trigger,) = filtered.with_data_filters.build().triggers
    assert trigger.data_filters and not trigger.expr_filters
    assert semantics.trigger_passes(trigger, body, None) is passes


@pytest.mark.parametrize(
    ("body", "passes"),
    [
        ({"kind": "refund", "amount": 5}, True),
        ({"kind": "buy", "amount": 100}, True),
        ({"kind": "buy", "amount": 99.5}, False),
        ({"kind": "buy", "amount": "lots"}, False),
        ({"amount": 500}, False),
    ],
)
def test_expression_filter(body: dict[str, Any], passes: bool) -> None:
    (trigger,) = filtered.with_expr_filter.build().triggers
    assert trigger.expr_filters and not trigger.data_filters
    assert semantics.trigger_passes(trigger, body, None) is passes


def test_a_run_counts_filtered_events_and_runs_the_rest() -> None:
    out, dead = MemorySink(), MemorySink()
    bodies = [
        {"kind": "buy", "amount": 20, "vip": True},
        {"kind": "buy", "amount": 1, "vip": True},
        {"kind": "other", "amount": 20, "vip": True},
    ]
    summary = run_local(
        filtered.with_data_filters.build(), ListSource(bodies), output=out, dead_letter=dead
    )
    assert (summary.events, summary.succeeded, summary.filtered, summary.failed) == (3, 1, 2, 0)
    assert len(out.records) == 1 and not dead.records
    assert "2 dropped by the trigger's filter" in summary.render()
