"""The events tier: Argo Events for real (v1.9.11) starts the compiled support-triage Workflow.

A ticket POSTed to the compiled webhook EventSource (its pod made by the real
kube-controller-manager from the Deployment the real Argo Events controller made, run by the pod
runner with the real ``argo-events`` binary) is published to a real JetStream EventBus
(nats-server v2.10.29), read by the compiled Sensor's pod, filtered by its compiled expression,
and turned into a Workflow by its k8s trigger with the parameters mapped as compiled, with the
Sensor's ServiceAccount and the Role rtflow compiled for it; Argo's real workflow-controller
runs that Workflow. What is played: the kubelet (rtflow.testing.pod_runner), Services (a name
and a bridge in each pod's network namespace), the EventBus's StatefulSet (an exotic JetStream
instead). See docs/development.md.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import events_harness as ev
import execution_harness as fx
import pytest
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.events import EventsPlane
from rtflow.testing.kafka_broker import KafkaBroker
from rtflow.testing.netns import NamespaceUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tier(
    control_plane: ControlPlane, kafka_broker: KafkaBroker,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[EventsPlane, ev.Webhook]]:  # fmt: skip
    """The events plane and the webhook; their logs (each pod's, the controllers') stay in the
    test's temporary folder. The session's broker is the dead-letter trigger's."""
    work = tmp_path_factory.mktemp("events")
    kafka_broker.create_topics(ev.DEAD_LETTER_TOPIC)
    host, port = kafka_broker.bootstrap_servers.rsplit(":", 1)
    try:
        events, webhook = ev.start(control_plane, work, (host, int(port)))
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        yield events, webhook
    finally:
        events.close()


def test_a_new_ticket_starts_the_workflow_with_its_body_and_header(
    tier: tuple[EventsPlane, ev.Webhook],
) -> None:
    events, webhook = tier
    ticket = ev.ticket(status="new", priority=1)
    sent = time.monotonic()
    assert webhook.post(ticket, headers={"X-Mode": "shadow"}) == 200
    wf = ev.wait_created(events.plane, ticket["id"])
    took = time.monotonic() - sent
    # Created by the Sensor from the compiled trigger: its generateName and labels, the
    # template it names, the body as the ticket and the header as the mode.
    assert wf["metadata"]["name"].startswith("support-triage-")
    assert wf["metadata"]["labels"]["rtflow.dev/trigger"] == "webhook"
    assert wf["spec"]["workflowTemplateRef"] == {"name": ev.TEMPLATE}
    assert ev.parameters(wf)["mode"] == "shadow"
    assert ev.ticket_of(wf) == ticket
    assert took < 30, took
    assert events.execution is not None
    done = fx.wait_for(events.execution, wf["metadata"]["name"], fx.finished)
    assert done["status"]["phase"] == "Succeeded", fx.nodes(done)
    (routed,) = fx.stand_in_calls(events.execution, wf["metadata"]["name"], "/router")
    assert routed["args"] == ["--queue", "billing", "--urgency", "1.0"]


def test_the_mode_defaults_when_the_header_is_absent(
    tier: tuple[EventsPlane, ev.Webhook],
) -> None:
    events, webhook = tier
    ticket = ev.ticket(status="open", priority=4)  # passes by its priority
    assert webhook.post(ticket) == 200
    wf = ev.wait_created(events.plane, ticket["id"])
    assert ev.parameters(wf)["mode"] == "live"


def test_a_filtered_ticket_creates_no_workflow(tier: tuple[EventsPlane, ev.Webhook]) -> None:
    """Neither new nor priority >= 3: the Sensor's filter drops it. A ticket that passes, sent
    after it on the same subject, is handled after it (the Sensor reads the subject in order):
    once its Workflow exists, the filtered one's would have too."""
    events, webhook = tier
    dropped = ev.ticket(status="open", priority=2)
    passed = ev.ticket(status="new", priority=0)
    assert webhook.post(dropped) == 200
    assert webhook.post(passed) == 200
    ev.wait_created(events.plane, passed["id"])
    ids = [t.get("id") for t in map(ev.ticket_of, ev.workflows(events.plane)) if t]
    assert dropped["id"] not in ids
    assert "didn't pass filter" in events.pod_logs("sensor-name", ev.SENSOR)


def test_a_wrong_token_is_refused_and_starts_nothing(
    tier: tuple[EventsPlane, ev.Webhook],
) -> None:
    events, webhook = tier
    refused = ev.ticket(status="new")
    assert webhook.post(refused, token="not-the-token") == 401
    passed = ev.ticket(status="new")
    assert webhook.post(passed) == 200
    ev.wait_created(events.plane, passed["id"])
    ids = [t.get("id") for t in map(ev.ticket_of, ev.workflows(events.plane)) if t]
    assert refused["id"] not in ids


def test_a_trigger_that_keeps_failing_goes_to_the_dead_letter_topic(
    tier: tuple[EventsPlane, ev.Webhook], kafka_broker: KafkaBroker
) -> None:
    """The Sensor's RoleBinding removed, its create is refused (403): the trigger is retried
    as compiled (5 steps from 1 s, doubling), then the compiled dlqTrigger writes the event's
    id and data, the pipeline, the trigger and the reason to the dead-letter topic. (Its data
    came base64-encoded in a string until rtflow selected it with ``@this``.)"""
    from kubernetes import client

    events, webhook = tier
    rbac = client.RbacAuthorizationV1Api(events.plane.api_client())
    (binding,) = [
        d for d in ev.documents(events)
        if d["kind"] == "RoleBinding" and d["metadata"]["name"] == ev.SENSOR_ACCOUNT
    ]  # fmt: skip
    rbac.delete_namespaced_role_binding(ev.SENSOR_ACCOUNT, ev.NAMESPACE)
    try:
        lost = ev.ticket(status="new")
        assert webhook.post(lost) == 200
        letters = _dead_letters(kafka_broker, lost["id"], timeout=90)
    finally:
        events.plane.apply([binding], namespace=ev.NAMESPACE)
    assert letters, events.pod_logs("sensor-name", ev.SENSOR)[-3000:]
    (letter,) = letters
    # The local run's keys: the event's id, its data as JSON (the body as posted, the headers
    # with the token masked by the eventsource)
    assert isinstance(letter["event"], str) and letter["event"]
    assert letter["payload"]["body"] == lost
    assert "not-the-token" not in json.dumps(letter) and ev.WEBHOOK_TOKEN not in json.dumps(letter)
    assert letter["pipeline"] == "support-triage"
    assert letter["trigger"] == "webhook"
    assert letter["reason"] == "failed to start the workflow"
    ids = [t.get("id") for t in map(ev.ticket_of, ev.workflows(events.plane)) if t]
    assert lost["id"] not in ids


def _dead_letters(broker: KafkaBroker, ticket_id: str, timeout: float) -> list[dict[str, Any]]:
    """The dead-letter records whose event holds this ticket."""
    from confluent_kafka import Consumer

    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers,
                         "group.id": f"dead-letters-{ticket_id}",
                         "auto.offset.reset": "earliest"})  # fmt: skip
    consumer.subscribe([ev.DEAD_LETTER_TOPIC])
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not found:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None and ticket_id.encode() in msg.value():
                found.append(json.loads(msg.value()))
    finally:
        consumer.close()
    return found


def test_the_compiled_event_bus_is_deployed_by_the_controller(
    tier: tuple[EventsPlane, ev.Webhook],
) -> None:
    """The bus rtflow compiles (``spec.jetstream``), under another name beside the tier's
    exotic one: Argo Events' controller validates it and makes its StatefulSet (three NATS
    2.10.29 servers; nothing here runs a StatefulSet's pods)."""
    from kubernetes import client

    events, _ = tier
    (bus,) = [d for d in ev.compiled() if d["kind"] == "EventBus"]
    bus = {**bus, "metadata": {**bus["metadata"], "name": "compiled-bus",
                               "namespace": ev.NAMESPACE}}  # fmt: skip
    events.plane.apply([bus], namespace=ev.NAMESPACE)
    apps = client.AppsV1Api(events.plane.api_client())
    deadline = time.monotonic() + 60
    while True:
        found = apps.list_namespaced_stateful_set(ev.NAMESPACE).items
        named = [s for s in found if s.metadata.name == "eventbus-compiled-bus-js"]
        if named or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert named, events.pod_logs("app", "controller-manager")[-3000:]
    (stateful_set,) = named
    assert stateful_set.spec.replicas == 3
    images = {c.image for c in stateful_set.spec.template.spec.containers}
    assert "nats:2.10.29" in images
    api = client.CustomObjectsApi(events.plane.api_client())
    while True:  # the status is written after the objects are made
        status = api.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", ev.NAMESPACE, "eventbus", "compiled-bus"
        ).get("status", {})
        conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
        if conditions.get("Deployed") == "True" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert conditions.get("Deployed") == "True", status


def test_close_leaves_no_process(tier: tuple[EventsPlane, ev.Webhook]) -> None:
    """Last in the module: the tier closed (its fixture's close then finds nothing to do).
    Every process it started is gone, and so is every network namespace, the pods' too. (A
    second plane of its own would run a second kube-controller-manager beside this one's,
    and two deployment controllers race on every Deployment.)"""
    events, _ = tier
    assert events.networks is not None and events.execution is not None
    pids = events.pids
    namespaces = [n.name for n in events.networks.namespaces()]
    namespaces.append(events.execution.netns.name)
    # the workflow-controller's, Argo Events' controller's, the eventsource's, the sensor's
    assert len(namespaces) >= 4
    assert len(pids) >= 6  # nats-server, kube-controller-manager, the four above
    events.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for name in namespaces:
        assert not Path(f"/run/netns/{name}").exists()
    # The controller read its ConfigMap at /etc/argo-events in its pod (an overlay of /etc in
    # its sandbox): nothing was made in this machine's /etc.
    assert not Path("/etc/argo-events").exists()
