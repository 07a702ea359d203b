"""A pipeline behind a Kafka trigger with both kinds of filter, for local filter semantics."""

from __future__ import annotations

from typing import Any

import rtflow


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def amount_of(order: dict[str, Any]) -> float:
    return float(order["amount"])


data_filtered = rtflow.kafka(
    "orders",
    brokers=["kafka:9092"],
    inputs={"order": "body"},
    filter=rtflow.payload("body.kind").isin(["buy", "sell.x"])
    & (rtflow.payload("body.amount") > 10)
    & (rtflow.payload("body.vip") == True),  # noqa: E712
    name="data",
)

expr_filtered = rtflow.kafka(
    "orders",
    brokers=["kafka:9092"],
    inputs={"order": "body"},
    filter=(rtflow.payload("body.kind") == "refund") | ~(rtflow.payload("body.amount") < 100),
    name="expr",
)


@rtflow.pipeline(name="data-filtered", namespace="filters", triggers=[data_filtered])
def with_data_filters(order: dict[str, Any]) -> None:
    amount_of(order)


@rtflow.pipeline(name="expr-filtered", namespace="filters", triggers=[expr_filtered])
def with_expr_filter(order: dict[str, Any]) -> None:
    amount_of(order)
