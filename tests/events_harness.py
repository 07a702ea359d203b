"""The support-triage example on the events tier (rtflow.testing.events): its compiled webhook
EventSource, Sensor, RBAC and WorkflowTemplate applied to the real API server; Argo Events'
real controller, eventsource and sensor services; a real JetStream EventBus; the Workflow the
Sensor creates run by Argo's real workflow-controller.

Shared by tests/integration/test_events_tier.py and benchmarks/control_plane.py.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import execution_harness as fx
import yaml

from rtflow.testing.control_plane import ControlPlane
from rtflow.testing.events import EventsPlane, move_to_namespace
from rtflow.testing.pod_network import Service

NAMESPACE = "support-events"
TEMPLATE = "support-triage"
EVENT_SOURCE = "support-triage-webhook"
EVENT_NAME = "webhook"  # the event of the EventSource the Sensor's dependency names
SENSOR = "support-triage"
WEBHOOK_PORT = 12000
ENDPOINT = "/tickets"
REGISTRY = "ghcr.io/acme/support"
# What the applied objects are: the calendar EventSource is left out (its hourly schedule would
# start sweep Workflows at the top of any hour a test runs through).
WANTED = {"ServiceAccount", "Role", "RoleBinding", "Secret", "WorkflowTemplate", "EventSource",
          "Sensor"}  # fmt: skip
WEBHOOK_TOKEN = secrets.token_hex(16)
# The compiled dead-letter trigger's broker and topic (examples/support_triage.py).
DEAD_LETTER_HOST, DEAD_LETTER_PORT = "kafka-0.kafka.svc", 9092
DEAD_LETTER_TOPIC = "support-dead-letter"
SENSOR_ACCOUNT = "support-triage-sensor"


def pipeline() -> Any:
    from rtflow.loader import load_pipelines

    _, (found,) = load_pipelines(str(fx.EXAMPLES / "support_triage.py"))
    return found.build()


def compiled() -> list[dict[str, Any]]:
    from rtflow.generators.compiler import compile_pipelines

    return [dict(m.body) for m in compile_pipelines([pipeline()]).manifests]


def documents(events: EventsPlane) -> list[dict[str, Any]]:
    """The compiled objects the events path needs, moved to NAMESPACE; the compiled EventBus
    (a managed JetStream StatefulSet) is replaced by the tier's exotic one of the same name,
    and the Secrets the manifests reference hold real values."""
    bodies = compiled()
    (bus,) = [b for b in bodies if b["kind"] == "EventBus"]
    wanted = [
        b for b in bodies
        if b["kind"] in WANTED and not (b["kind"] == "EventSource"
                                        and b["metadata"]["name"] != EVENT_SOURCE)
    ]  # fmt: skip
    secret_values = {
        "helpdesk-webhook": {"token": WEBHOOK_TOKEN},
        "helpdesk-api": {"token": secrets.token_hex(8)},
        "pager": {"routing-key": secrets.token_hex(8)},
    }
    credentials = [
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "stringData": data}
        for name, data in secret_values.items()
    ]
    return [
        *move_to_namespace([*wanted, *credentials], NAMESPACE),
        events.event_bus(bus["metadata"]["name"]),
    ]


def images() -> dict[str, Any]:
    return {
        f"{REGISTRY}/classifier": fx.python_image(),
        f"{REGISTRY}/router": fx.stand_in_image("/router"),
        f"{REGISTRY}/pager": fx.stand_in_image("/pager"),
    }


# The two user containers have no command: Argo's `images` setting names their entrypoints.
CONTROLLER_CONFIG = {"images": yaml.safe_dump({
    f"{REGISTRY}/router:1.3.0": {"entrypoint": ["/router"]},
    f"{REGISTRY}/pager:2.0.1": {"entrypoint": ["/pager"]},
})}  # fmt: skip


class Webhook:
    """The EventSource's webhook, reached as ``kubectl port-forward`` reaches its pod."""

    def __init__(self, events: EventsPlane) -> None:
        self.events = events
        self.port = events.forward(EVENT_SOURCE, WEBHOOK_PORT)

    def post(
        self,
        body: dict[str, Any],
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> int:
        """POST ``body`` as JSON; returns the HTTP status. Retried while the server inside the
        pod is not listening yet (the forward's connection is then reset)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{ENDPOINT}", data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json",
                     "Authorization": f"Bearer {token or WEBHOOK_TOKEN}", **(headers or {})},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                if exc.code != 503 or time.monotonic() > deadline:  # 503: route not active yet
                    return int(exc.code)
            except (ConnectionError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.1)


def start(
    plane: ControlPlane, work_dir: Path | None = None, broker: tuple[str, int] | None = None
) -> tuple[EventsPlane, Webhook]:
    """The events tier for support-triage, its Sensor subscribed, its webhook reachable; with
    ``broker`` (a plaintext Kafka listener), the Service name the compiled dead-letter trigger
    dials (``kafka-0.kafka.svc:9092``) and the address the broker advertises lead to it."""
    services = (
        [Service((DEAD_LETTER_HOST,), DEAD_LETTER_PORT, broker), Service((), broker[1], broker)]
        if broker
        else []
    )
    events = EventsPlane(plane, NAMESPACE, images(), controller_config=CONTROLLER_CONFIG,
                         services=services, work_dir=work_dir)  # fmt: skip
    events.start()
    try:
        plane.apply(documents(events), namespace=NAMESPACE)
        events.wait_subscribed(f"{EVENT_SOURCE}.{EVENT_NAME}")
        webhook = Webhook(events)
    except BaseException:
        events.close()
        raise
    return events, webhook


def workflows(plane: ControlPlane, selector: str = "rtflow.dev/trigger=webhook") -> list[Any]:
    from kubernetes import client

    api = client.CustomObjectsApi(plane.api_client())
    found = api.list_namespaced_custom_object(
        "argoproj.io", "v1alpha1", NAMESPACE, "workflows", label_selector=selector
    )
    return list(found["items"])


def parameters(wf: dict[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("value", "") for p in wf["spec"]["arguments"]["parameters"]}


def ticket_of(wf: dict[str, Any]) -> Any:
    try:
        return json.loads(parameters(wf).get("ticket", ""))
    except ValueError:
        return None


def wait_created(
    plane: ControlPlane, ticket_id: str, timeout: float = 60.0, interval: float = 0.02
) -> dict[str, Any]:
    """The Workflow whose ``ticket`` argument has this id, once the API server has it."""
    deadline = time.monotonic() + timeout
    while True:
        for wf in workflows(plane):
            ticket = ticket_of(wf)
            if isinstance(ticket, dict) and ticket.get("id") == ticket_id:
                return wf
        if time.monotonic() > deadline:
            raise TimeoutError(f"no Workflow for ticket {ticket_id} after {timeout:g} s")
        time.sleep(interval)


def ticket(**fields: Any) -> dict[str, Any]:
    base = {"id": f"tk-{secrets.token_hex(4)}", "subject": "refund", "body": "invoice wrong",
            "tier": 5, "status": "new", "priority": 1}  # fmt: skip
    return {**base, **fields}
