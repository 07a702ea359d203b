"""One Kafka trigger mapping event fields of every JSON kind into typed pipeline inputs, for the
plane agreement tests: the stream plane (``streamed``), the workflow plane as compiled
(``workflow``, its Sensor run for real by tests/integration/test_events_typed_inputs.py).

``echo`` returns its inputs as the stage runtime gave them, so a test compares the values a
stage sees on either plane. The topic and broker are the test's (``$RTFLOW_TEST_BROKER``,
``$RTFLOW_TEST_TOPIC``).
"""

from __future__ import annotations

import os
from typing import Any

import rtflow

TOPIC = os.environ.get("RTFLOW_TEST_TOPIC", "typed-events")
BROKER = os.environ.get("RTFLOW_TEST_BROKER", "kafka-0.kafka.svc:9092")

# input -> (its type, the payload field mapped into it)
INPUTS: dict[str, tuple[type, str]] = {
    "event_id": (str, "body.id"),
    "text": (str, "body.text"),
    "count": (int, "body.count"),
    "ratio": (float, "body.ratio"),
    "flag": (bool, "body.flag"),
    "record": (dict, "body.record"),
    "items": (list, "body.items"),
    "numbers": (list[int], "body.numbers"),
}

trigger = rtflow.kafka(
    TOPIC,
    brokers=[BROKER],
    consumer_group="typed-inputs",
    start="oldest",
    name="typed",
    inputs={
        **{name: path for name, (_, path) in INPUTS.items()},
        "limit": rtflow.field("body.limit", default=3),
    },
    # gjson's coercions decide these (rtflow.stages.event_values): a string's number counts for
    # the number filter, "true"/"1" for the bool filter, a number's text for the string filter.
    filter=(rtflow.payload("body.level") > 10)
    & (rtflow.payload("body.live") == True)  # noqa: E712
    & (rtflow.payload("body.region") == "7"),
)


@rtflow.stage(image="ghcr.io/acme/typed/echo:1.0.0")
def echo(
    event_id: str,
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    record: dict[str, Any],
    items: list,  # type: ignore[type-arg]
    numbers: list[int],
    limit: int,
) -> dict[str, Any]:
    return {
        "event_id": event_id, "text": text, "count": count, "ratio": ratio, "flag": flag,
        "record": record, "items": items, "numbers": numbers, "limit": limit,
    }  # fmt: skip


def _body(
    event_id: str,
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    record: dict[str, Any],
    items: list,  # type: ignore[type-arg]
    numbers: list[int],
    limit: int = 3,
) -> None:
    echo(event_id, text, count, ratio, flag, record, items, numbers, limit)


streamed = rtflow.pipeline(
    name="typed-inputs",
    latency_budget_ms=50,
    triggers=[trigger],
    stream=rtflow.Stream(results_topic=f"{TOPIC}-results", image="ghcr.io/acme/typed/s:1.0.0"),
)(_body)
workflow = rtflow.pipeline(name="typed-inputs", triggers=[trigger])(_body)


# The one difference left on purpose (docs/triggers.md): a payload schema the stream plane
# admits events with, and the Sensor knows nothing of.
orders = rtflow.kafka(
    f"{TOPIC}-orders",
    brokers=[BROKER],
    consumer_group="typed-orders",
    name="orders",
    inputs={"order": "body"},
    payload_schema={"total": float, "kind": str},
)


@rtflow.stage(image="ghcr.io/acme/typed/echo:1.0.0")
def total_of(order: dict[str, Any]) -> float:
    return float(order["total"])


def _orders(order: dict[str, Any]) -> None:
    total_of(order)


streamed_orders = rtflow.pipeline(
    name="typed-orders",
    latency_budget_ms=50,
    triggers=[orders],
    stream=rtflow.Stream(image="ghcr.io/acme/typed/s:1.0.0"),
)(_orders)
workflow_orders = rtflow.pipeline(name="typed-orders", triggers=[orders])(_orders)
