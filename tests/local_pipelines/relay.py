"""Relay each order to a Kafka topic through the built-in publish stage (brokers from
``$KAFKA_BROKERS``)."""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.stages.builtin.kafka_publish import kafka_publish


@rtflow.pipeline(name="relay", namespace="relay")
def relay(order: dict[str, Any], topic: str) -> None:
    kafka_publish(topic=topic, payload=order, key_field="id")
