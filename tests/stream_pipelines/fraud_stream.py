"""The fraud hot path on the stream plane, for the tests: the example's own stages and model,
with topics and consumer group of the test's own (``$RTFLOW_TEST_TOPICS`` is appended to every
name, so tests sharing one broker never read each other's events).

A ``guard`` stage in front turns a ``"poison"`` field into the failures a real stage can have:
``"bad_input"`` raises BadInput, ``"crash"`` raises a plain exception. Suspicious transactions
hand off to a manual-review container on the workflow plane.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from fraud_detection import compute_features, decide, publish  # noqa: E402
from models.fraud_scorer import FRAUD_SCORER  # noqa: E402
from models.fraud_scorer import SERVER as EXAMPLE_SERVER  # noqa: E402

import rtflow  # noqa: E402
from rtflow.stages.runtime import BadInput  # noqa: E402

SUFFIX = os.environ.get("RTFLOW_TEST_TOPICS", "")
GUARANTEE = os.environ.get("RTFLOW_TEST_GUARANTEE", "exactly_once")
SOURCE = f"transactions{SUFFIX}"
DECISIONS = f"decisions{SUFFIX}"
DEAD_LETTER = f"dead-letter{SUFFIX}"
HANDOFF = f"handoff{SUFFIX}"
# The example's server, its image pinned as a cluster should run it (a fictional digest: no
# registry is reached; the example pins it in its prod environment instead).
SERVER = dataclasses.replace(
    EXAMPLE_SERVER,
    image=f"{EXAMPLE_SERVER.image}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.stage(image="ghcr.io/acme/fraud/guard:1.0.0")
def guard(transaction: dict[str, Any]) -> dict[str, Any]:
    poison = transaction.get("poison")
    if poison == "bad_input":
        raise BadInput("the transaction is flagged as a bad input")
    if poison == "crash":
        raise RuntimeError("the guard crashed on this transaction")
    return transaction


manual_review = rtflow.container(
    "manual-review",
    image="ghcr.io/acme/fraud/review:1.0.0",
    args=["--record", "{record}"],
    inputs={"record": dict},
)

# The cluster's Kafka security, as the fraud example declares it (compiled into the workers'
# Deployment as Secret files); the workers themselves read it from their environment.
SECURITY: dict[str, Any] = (
    {
        "sasl": rtflow.Sasl(
            user=rtflow.SecretKey("kafka-credentials", "username"),
            password=rtflow.SecretKey("kafka-credentials", "password"),
        ),
        "tls": rtflow.Tls(ca_cert=rtflow.SecretKey("kafka-ca", "ca.crt")),
    }
    if os.environ.get("RTFLOW_TEST_SECURE") == "1"
    else {}
)

transactions = rtflow.kafka(
    SOURCE,
    brokers=["kafka.invalid:9092"],  # the workers are given the test broker
    consumer_group=f"fraud{SUFFIX}",
    **SECURITY,
    inputs={
        "transaction": "body",
        "review_threshold": rtflow.field("body.review_threshold", default=0.9),
    },
    filter=rtflow.payload("body.type").isin(["purchase", "cash_withdrawal"])
    & (rtflow.payload("body.amount") > 0),
    payload_schema={
        "type": str,
        "amount": float,
        "country": str,
        "card_country": str,
        "channel": str,
        "hour": int,
        "first_time_merchant": bool,
        "review_threshold": float,
    },
    delivery=rtflow.Delivery(dead_letter=rtflow.DeadLetter(DEAD_LETTER)),
)


@rtflow.pipeline(
    name="fraud-stream",
    namespace="fraud-stream",
    latency_budget_ms=35,
    triggers=[transactions],
    stream=rtflow.Stream(
        guarantee=GUARANTEE,
        handoff_topic=HANDOFF,
        partitions=4,
        batches_in_flight=int(os.environ.get("RTFLOW_TEST_BATCHES", "1")),
        # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
        image="ghcr.io/acme/fraud/stream:test@sha256:c01144f49a36aa24115b0f3445dc819043b69e4f1eb3ebee62414688401256af",
    ),
)
def fraud_stream(transaction: dict[str, Any], review_threshold: float = 0.9) -> None:
    checked = guard(transaction)
    features = compute_features(checked)
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {"features": features}, name="score", timeout="2s")
    decision = decide(scored, checked)
    publish(topic=DECISIONS, payload=decision.record, key_field="transaction_id")
    with rtflow.when(decision.risk > review_threshold):
        manual_review(record=decision.record)
