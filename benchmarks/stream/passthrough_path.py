"""The floor under the fraud hot path: the same trigger and publish with nothing between them.

No stage and no Triton: a worker decodes each transaction and publishes it unchanged, keyed by
its id, inside the same transactions as the fraud hot path. What is left is the cost of Kafka's
exactly-once on this machine (the broker, the commit, the read_committed reader) and of the
worker's loop: the ceiling a hot path with stages and a model can approach, not pass.
"""

from __future__ import annotations

import os
from typing import Any

import rtflow
from rtflow.stages.builtin.kafka_publish import kafka_publish

SUFFIX = os.environ.get("RTFLOW_BENCH_TOPICS", "")

transactions = rtflow.kafka(
    f"transactions{SUFFIX}",
    brokers=["kafka.invalid:9092"],
    consumer_group=f"fraud{SUFFIX}",
    inputs={"transaction": "body"},
    delivery=rtflow.Delivery(dead_letter=rtflow.DeadLetter(f"dead-letter{SUFFIX}")),
)

publish = rtflow.configure(kafka_publish, name="publish-transaction")


@rtflow.pipeline(
    name="fraud-passthrough",
    latency_budget_ms=35,
    triggers=[transactions],
    stream=rtflow.Stream(
        guarantee=os.environ.get("RTFLOW_BENCH_GUARANTEE", "exactly_once"),
        partitions=int(os.environ.get("RTFLOW_BENCH_PARTITIONS", "4")),
    ),
)
def fraud_passthrough(transaction: dict[str, Any]) -> None:
    publish(topic=f"decisions{SUFFIX}", payload=transaction, key_field="id")
