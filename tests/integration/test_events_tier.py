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

import os
import time
from collections.abc import Iterator
from pathlib import Path

import events_harness as ev
import execution_harness as fx
import pytest
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.events import EventsPlane
from rtflow.testing.netns import NamespaceUnavailable

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def tier(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[EventsPlane, ev.Webhook]]:
    """The events plane and the webhook; their logs (each pod's, the controllers') stay in the
    test's temporary folder."""
    work = tmp_path_factory.mktemp("events")
    try:
        events, webhook = ev.start(control_plane, work)
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


def test_close_leaves_no_process(control_plane: ControlPlane, tmp_path: Path) -> None:
    """An events plane of its own, closed once Argo Events' controller runs in a pod: every
    process it started is gone, and so is every network namespace (the pods' too)."""
    try:
        events = EventsPlane(control_plane, "events-close-probe", {}, work_dir=tmp_path).start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        events.running_pod("app", "controller-manager")
        pids = events.pids
        assert events.networks is not None and events.execution is not None
        namespaces = [n.name for n in events.networks.namespaces()]
        namespaces.append(events.execution.netns.name)
    except BaseException:
        events.close()
        raise
    assert len(namespaces) >= 2  # the workflow-controller's, the Argo Events controller pod's
    assert len(pids) >= 4  # nats-server, kube-controller-manager, the two controllers
    events.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    for name in namespaces:
        assert not Path(f"/run/netns/{name}").exists()
