"""The fraud example's hand-off on the events tier (rtflow.testing.events): its compiled Kafka
EventSource reads a real SASL_SSL broker, its compiled Sensor creates the fraud Workflow.

Shared by tests/integration/test_events_kafka.py and benchmarks/control_plane.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import execution_harness as fx

from rtflow.testing.control_plane import ControlPlane
from rtflow.testing.events import EventsPlane, move_to_namespace
from rtflow.testing.kafka_broker import KafkaBroker
from rtflow.testing.pod_network import Service

NAMESPACE = "fraud-events"
TOPIC = "fraud-detection-handoff"
GROUP = "fraud-detection-handoff"  # the compiled EventSource's consumer group
WANTED = {"ServiceAccount", "Role", "RoleBinding", "Secret", "WorkflowTemplate", "EventSource",
          "Sensor"}  # fmt: skip


def documents(events: EventsPlane, security: Any) -> list[dict[str, Any]]:
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


def start(
    plane: ControlPlane, broker: KafkaBroker, security: Any, work_dir: Path | None = None
) -> EventsPlane:
    """The events tier for the fraud hand-off: its Sensor subscribed, its EventSource's
    consumer group holding the topic."""
    host, port = broker.secure_bootstrap_servers.rsplit(":", 1)
    secure = (host, int(port))
    # The bootstrap names and the address the broker advertises, both to its SASL_SSL port.
    services = [
        Service(tuple(fx.BROKER_NAMES), fx.BROKER_PORT, secure),
        Service((), secure[1], secure),
    ]
    events = EventsPlane(plane, NAMESPACE, {}, services=services, work_dir=work_dir).start()
    try:
        plane.apply(documents(events, security), namespace=NAMESPACE)
        events.wait_subscribed(f"{TOPIC}.handoff")
        wait_group_assigned(broker, GROUP)
    except BaseException:
        events.close()
        raise
    return events


def wait_group_assigned(broker: KafkaBroker, group: str, timeout: float = 120.0) -> None:
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


def handoff(transaction: dict[str, Any], risk: str) -> dict[str, Any]:
    """A hand-off record as the stream plane writes it (rtflow.stages.stream.plan)."""
    return {
        "pipeline": "fraud-detection",
        "inputs": {"transaction": json.dumps(transaction), "review_threshold": "0.8"},
        "outputs": {"compute-features": {"result": json.dumps({"f": [1.0, 2.0]})},
                    "decide": {"risk": risk}},
        "source": {"topic": "transactions", "partition": 0, "offset": 7},
    }  # fmt: skip


def produce(broker: KafkaBroker, record: dict[str, Any], key: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    producer.produce(TOPIC, json.dumps(record).encode(), key=key.encode())
    if producer.flush(10) != 0:
        raise RuntimeError("the hand-off record was not delivered")


def wait_created(
    plane: ControlPlane, transaction_id: str, timeout: float = 60.0, interval: float = 0.1
) -> dict[str, Any] | None:
    """The fraud Workflow whose arguments hold this transaction, once the API server has it."""
    from kubernetes import client

    api = client.CustomObjectsApi(plane.api_client())
    deadline = time.monotonic() + timeout
    while True:
        items = api.list_namespaced_custom_object(
            "argoproj.io", "v1alpha1", NAMESPACE, "workflows",
            label_selector="rtflow.dev/trigger=handoff",
        )["items"]  # fmt: skip
        for wf in items:
            if transaction_id in json.dumps(wf["spec"]):
                return dict(wf)
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)
