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
import pytest
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.events import EventsPlane, move_to_namespace
from rtflow.testing.kafka_broker import KafkaBroker, KafkaUnavailable
from rtflow.testing.netns import NamespaceUnavailable
from rtflow.testing.pod_network import Service

pytestmark = pytest.mark.integration

NAMESPACE = "fraud-events"
TOPIC = "fraud-detection-handoff"
GROUP = "fraud-detection-handoff"  # the compiled EventSource's consumer group
WANTED = {"ServiceAccount", "Role", "RoleBinding", "Secret", "WorkflowTemplate", "EventSource",
          "Sensor"}  # fmt: skip


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[tuple[KafkaBroker, Any]]:
    security = fx.broker_security()
    broker = KafkaBroker(security=security)
    try:
        try:
            broker.start()
        except KafkaUnavailable as exc:
            component_missing(str(exc))
        broker.create_topics(TOPIC, "transactions-dead-letter")
        yield broker, security
    finally:
        broker.close()


def _documents(events: EventsPlane, security: Any) -> list[dict[str, Any]]:
    """The fraud example as compiled (with its stream plane, which hands off to this Sensor):
    its events-side objects, the Secrets they name with real material, and the bus the
    EventSource and Sensor name (``default``: an existing bus, here the tier's)."""
    from rtflow.generators.compiler import compile_pipelines
    from rtflow.loader import load_pipelines

    _, (pipeline,) = load_pipelines(str(fx.EXAMPLES / "fraud_detection.py"))
    bodies = [dict(m.body) for m in compile_pipelines([pipeline.build()]).manifests]
    wanted = [b for b in bodies if b["kind"] in WANTED]
    buses = {b["spec"].get("eventBusName", "default") for b in wanted
             if b["kind"] in ("EventSource", "Sensor")}  # fmt: skip
    return [
        *move_to_namespace([*wanted, *fx.credentials(security)], NAMESPACE),
        *(events.event_bus(name) for name in sorted(buses)),
    ]


@pytest.fixture(scope="module")
def kafka_tier(
    control_plane: ControlPlane, secure_broker: tuple[KafkaBroker, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EventsPlane]:  # fmt: skip
    broker, security = secure_broker
    host, port = broker.secure_bootstrap_servers.rsplit(":", 1)
    secure = (host, int(port))
    # The bootstrap names and the address the broker advertises, both to its SASL_SSL port.
    services = [
        Service(tuple(fx.BROKER_NAMES), fx.BROKER_PORT, secure),
        Service((), secure[1], secure),
    ]
    events = EventsPlane(control_plane, NAMESPACE, {}, services=services,
                         work_dir=tmp_path_factory.mktemp("events-kafka"))  # fmt: skip
    try:
        events.start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        control_plane.apply(_documents(events, security), namespace=NAMESPACE)
        events.wait_subscribed(f"{TOPIC}.handoff")
        _wait_group_assigned(broker, GROUP)
        yield events
    finally:
        events.close()


def _wait_group_assigned(broker: KafkaBroker, group: str, timeout: float = 120.0) -> None:
    """Until the EventSource's consumer group has a member holding the topic's partitions:
    it starts at the newest offset (``oldest: false``), so a record produced before would be
    skipped."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    deadline = time.monotonic() + timeout
    while True:
        (future,) = admin.describe_consumer_groups([group]).values()
        try:
            described = future.result(10)
        except Exception:  # not known yet
            described = None
        if (
            described is not None
            and described.state == ConsumerGroupState.STABLE
            and any(m.assignment.topic_partitions for m in described.members)
        ):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"consumer group {group} not assigned after {timeout:g} s")
        time.sleep(0.5)


def _handoff(transaction: dict[str, Any], risk: str) -> dict[str, Any]:
    """A hand-off record as the stream plane writes it (rtflow.stages.stream.plan)."""
    return {
        "pipeline": "fraud-detection",
        "inputs": {"transaction": json.dumps(transaction), "review_threshold": "0.8"},
        "outputs": {"compute-features": {"result": json.dumps({"f": [1.0, 2.0]})},
                    "decide": {"risk": risk}},
        "source": {"topic": "transactions", "partition": 0, "offset": 7},
    }  # fmt: skip


def test_a_handoff_record_starts_the_fraud_workflow_with_its_parameters(
    kafka_tier: EventsPlane, secure_broker: tuple[KafkaBroker, Any]
) -> None:
    from confluent_kafka import Producer
    from kubernetes import client

    broker, _ = secure_broker
    transaction = {"id": f"t-{uuid.uuid4().hex[:8]}", "amount": 950.0, "country": "US"}
    record = _handoff(transaction, "0.93")
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    sent = time.monotonic()
    producer.produce(TOPIC, json.dumps(record).encode(), key=transaction["id"].encode())
    assert producer.flush(10) == 0
    api = client.CustomObjectsApi(kafka_tier.plane.api_client())
    deadline = time.monotonic() + 60
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        items = api.list_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NAMESPACE, "workflows",
            label_selector="rtflow.dev/trigger=handoff",
        )["items"]  # fmt: skip
        found = [w for w in items if transaction["id"] in json.dumps(w["spec"])]
        time.sleep(0.1)
    assert found, kafka_tier.diagnostics()
    took = time.monotonic() - sent
    print(f"hand-off produced -> Workflow seen (listed every 100 ms): {took:.3f} s")
    assert took < 30, took
    (wf,) = found
    assert wf["spec"]["workflowTemplateRef"] == {"name": fx.TEMPLATE}
    parameters = {p["name"]: p.get("value") for p in wf["spec"]["arguments"]["parameters"]}
    assert json.loads(parameters["transaction"]) == transaction
    assert parameters["review_threshold"] == "0.8"
    assert json.loads(parameters["compute-features-result"]) == {"f": [1.0, 2.0]}
    assert parameters["decide-risk"] == "0.93"
