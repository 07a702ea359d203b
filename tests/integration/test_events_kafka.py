"""The events tier with a Kafka trigger: the fraud example's compiled handoff EventSource reads a
real SASL_SSL broker (SCRAM-SHA-512, its CA and credentials from real Secrets, as compiled),
and the compiled Sensor turns a hand-off record (the stream plane's shape: the pipeline's
inputs and the hot path's outputs as texts) into a fraud Workflow with the parameters mapped
as compiled. The Workflow's run is the execution tier's (tests/integration/test_execution_tier.py);
here it is only created. A plane of its own (namespace fraud-events): the support tier's
dead-letter broker is plaintext under the same Service name (kafka-0.kafka.svc:9092).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import execution_harness as fx
import handoff_harness as hx
import pytest
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.events import EventsPlane
from rtflow.testing.kafka_broker import KafkaBroker, KafkaUnavailable
from rtflow.testing.netns import NamespaceUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[tuple[KafkaBroker, Any]]:
    security = fx.broker_security()
    broker = KafkaBroker(security=security)
    try:
        try:
            broker.start()
        except KafkaUnavailable as exc:
            component_missing(str(exc))
        broker.create_topics(hx.TOPIC, "transactions-dead-letter")
        yield broker, security
    finally:
        broker.close()


@pytest.fixture(scope="module")
def kafka_tier(
    control_plane: ControlPlane, secure_broker: tuple[KafkaBroker, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EventsPlane]:  # fmt: skip
    broker, security = secure_broker
    try:
        events = hx.start(control_plane, broker, security, tmp_path_factory.mktemp("events-kafka"))
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        yield events
    finally:
        events.close()


def test_a_handoff_record_starts_the_fraud_workflow_with_its_parameters(
    kafka_tier: EventsPlane, secure_broker: tuple[KafkaBroker, Any]
) -> None:
    broker, _ = secure_broker
    transaction = {"id": f"t-{uuid.uuid4().hex[:8]}", "amount": 950.0, "country": "US"}
    sent = time.monotonic()
    hx.produce(broker, hx.handoff(transaction, "0.93"), transaction["id"])
    wf = hx.wait_created(kafka_tier.plane, transaction["id"])
    assert wf is not None, kafka_tier.diagnostics()
    took = time.monotonic() - sent
    print(f"hand-off produced -> Workflow seen (listed every 100 ms): {took:.3f} s")
    assert took < 30, took
    assert wf["spec"]["workflowTemplateRef"] == {"name": fx.TEMPLATE}
    parameters = {p["name"]: p.get("value") for p in wf["spec"]["arguments"]["parameters"]}
    assert json.loads(parameters["transaction"]) == transaction
    assert parameters["review_threshold"] == "0.8"
    assert json.loads(parameters["compute-features-result"]) == {"f": [1.0, 2.0]}
    assert parameters["decide-risk"] == "0.93"
