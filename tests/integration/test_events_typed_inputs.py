"""The rule both planes follow for an event's JSON value (rtflow.stages.event_values), pinned
against the real Argo Events v1.9.11: tests/plane_agreement_pipeline.py's Kafka trigger, as
compiled (EventSource, Sensor, RBAC), reads a real broker through the real eventsource
service, and the real Sensor's data filters and k8s trigger create one Workflow per event that
passes. Its parameters are the texts rtflow says the Sensor gives (:func:`argo_text`: gjson's
``String()``, an object's compact JSON with ``<``/``>``/``&`` escaped, ``null`` as a word, a
mapping's default only for an absent field); the filters coerce as rtflow says
(``"11" > 10`` holds, ``"abc"`` is 0, ``"1"`` is true, the number 7 matches ``"7"``); and the
stage runtime given those real texts comes to what the stream plane's worker plan comes to for
the same bytes. The Workflows are only created (no WorkflowTemplate is applied).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import plane_agreement_pipeline as typed
import pytest
import test_plane_agreement as agreement
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.events import EventsPlane, move_to_namespace
from rtflow.testing.kafka_broker import KafkaBroker
from rtflow.testing.netns import NamespaceUnavailable
from rtflow.testing.pod_network import Service

pytestmark = pytest.mark.integration

NAMESPACE = "typed-events"
WANTED = {"ServiceAccount", "Role", "RoleBinding", "EventSource", "Sensor"}
BROKER_HOST, BROKER_PORT = typed.BROKER.rsplit(":", 1)


def _documents(events: EventsPlane) -> list[dict[str, Any]]:
    from rtflow.generators.compiler import compile_pipelines

    bodies = [dict(m.body) for m in compile_pipelines([agreement.WORKFLOW]).manifests]
    wanted = [b for b in bodies if b["kind"] in WANTED]
    buses = {b["spec"].get("eventBusName", "default") for b in wanted
             if b["kind"] in ("EventSource", "Sensor")}  # fmt: skip
    return [*move_to_namespace(wanted, NAMESPACE), *(events.event_bus(n) for n in sorted(buses))]


@pytest.fixture(scope="module")
def tier(
    control_plane: ControlPlane, kafka_broker: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EventsPlane]:  # fmt: skip
    kafka_broker.create_topics(typed.TOPIC)
    host, port = kafka_broker.bootstrap_servers.rsplit(":", 1)
    broker = (host, int(port))
    # the compiled brokers' name, and the address the broker advertises, lead to it
    services = [Service((BROKER_HOST,), int(BROKER_PORT), broker), Service((), broker[1], broker)]
    work = tmp_path_factory.mktemp("events-typed")
    try:
        events = EventsPlane(control_plane, NAMESPACE, {}, services=services, work_dir=work)
        events.start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        control_plane.apply(_documents(events), namespace=NAMESPACE)
        (trigger,) = agreement.WORKFLOW.triggers
        events.wait_subscribed(f"{agreement.WORKFLOW.name}-{trigger.name}.{trigger.name}")
        yield events
    finally:
        events.close()


def _workflows(plane: ControlPlane) -> dict[str, dict[str, str]]:
    """The parameters of each Workflow the Sensor created, by the event's id."""
    from kubernetes import client

    api = client.CustomObjectsApi(plane.api_client())
    items = api.list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows", label_selector="rtflow.dev/trigger=typed"
    )["items"]
    found = {}
    for wf in items:
        parameters = {p["name"]: p.get("value", "") for p in wf["spec"]["arguments"]["parameters"]}
        found[parameters["event_id"]] = parameters
    return found


def _event(**fields: Any) -> dict[str, Any]:
    body = {**agreement.BASE, "id": f"e-{uuid.uuid4().hex[:10]}"}
    for name, value in fields.items():
        if value is agreement.ABSENT:
            body.pop(name, None)
        else:
            body[name] = value
    return body


# Every mapped field may hold any JSON (the Sensor does not know the inputs' types); at most one
# input per event does not fit its type, so the reason names the same input on every plane.
ABSENT = agreement.ABSENT
STARTED = [
    _event(text=7, count="7", ratio=7.0, flag=True, record={"b": 1, "a": "<x> & y"},
           items=[1, "é", 2.5], level="11", live="1", region=7),
    _event(text={"b": 1, "a": "<x> & y", "c": [1, {"z": None}]}, count=1e21, ratio=-0.0,
           flag="true", record='{"a": 1}', items="[1, 2]", limit=5, live="true", region=7.0),
    _event(text=None, count=12345678901234567890, ratio=1.5e-7, flag=False, record={}, items=[],
           numbers=[1, 2.0], limit=ABSENT, level=11.5, live=1),
    _event(text=7.5, count=7.5),
    _event(text=1e21, ratio="7.5", limit=None),
    _event(text=[1, "é", 2.5], numbers=123456789.125),
    _event(text=True, items={"k": [1, {"z": None}]}),
    _event(text=12345678901234567890, flag=1),
    _event(text=-0.0, record="x"),
]  # fmt: skip
NOT_STARTED = {
    "a string that is no number is 0 to a number filter": _event(level="abc"),
    "null is 0 to a number filter": _event(level=None),
    "'yes' is false to a bool filter": _event(live="yes"),
    "0 is false to a bool filter": _event(live=0),
    "a string filter is anchored": _event(region="77"),
    "a mapped field absent, no default": _event(text=agreement.ABSENT),
}


def _produce(broker: KafkaBroker, bodies: list[dict[str, Any]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
    for body in bodies:
        # as most producers write it: with spaces, non-ASCII characters as UTF-8
        producer.produce(typed.TOPIC, json.dumps(body, ensure_ascii=False).encode(), key=b"k")
    assert producer.flush(10) == 0


def test_the_real_sensor_gives_the_texts_and_filters_the_rule_says(
    tier: EventsPlane, kafka_broker: KafkaBroker
) -> None:
    _produce(kafka_broker, [*NOT_STARTED.values(), *STARTED])
    wanted = {body["id"] for body in STARTED}
    deadline = time.monotonic() + 120
    while not wanted <= set(found := _workflows(tier.plane)):
        assert time.monotonic() < deadline, (sorted(found), tier.diagnostics())
        time.sleep(0.2)
    time.sleep(5)  # the refused ones were produced first; give them time to show up anyway
    found = _workflows(tier.plane)
    for why, body in NOT_STARTED.items():
        assert body["id"] not in found, why
    assert len(found) == len(STARTED), sorted(found)
    for body in STARTED:
        real = found[body["id"]]
        assert real == agreement.sensor_texts(body), body
        # the stage runtime given the real texts, and the stream plane given the same bytes
        outcome = agreement.ECHO.invoke(real)
        streamed = agreement.stream_outcome("text", body)
        if outcome.status == "ok":
            seen = json.loads(outcome.outputs["result"])
            assert streamed == ("text", seen["text"]), (body, seen)
            message = agreement.Message(typed.TOPIC, 0, 1, json.dumps(body).encode(), b"k", [], 0)
            (record,) = agreement.PLAN.execute([message]).records
            assert json.loads(record.value)["outputs"]["echo"]["result"] == seen
        else:
            assert streamed == ("dead", outcome.error), (body, outcome)
    # what the texts were, for the docs
    print(json.dumps({b["id"]: found[b["id"]] for b in STARTED}, indent=1, ensure_ascii=False))
