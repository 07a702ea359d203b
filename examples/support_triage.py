"""Support triage: classify every new ticket the moment it is filed; sweep the backlog hourly.

A helpdesk webhook posts each new ticket; the pipeline classifies it, estimates urgency and
routes it to a queue. The same pipeline also runs every hour on a schedule to re-rank the open
backlog, so a ticket that was missed (webhook down, classifier failing) is still picked up.

Compile:  rtflow compile examples/support_triage.py -o manifests
"""

from __future__ import annotations

from typing import Any, NamedTuple

import rtflow

REGISTRY = "ghcr.io/acme/support"


class Triage(NamedTuple):
    queue: str
    urgency: float


@rtflow.stage(image=f"{REGISTRY}/classifier:0.9.2", cpu="1", memory="2Gi", timeout="20s")
def classify(ticket: dict[str, Any], mode: str) -> Triage:
    """Route by keywords; urgency grows with the customer's tier and the ticket's age."""
    text = f"{ticket.get('subject', '')} {ticket.get('body', '')}".lower()
    queue = "billing" if "invoice" in text or "refund" in text else "technical"
    urgency = min(1.0, 0.2 * int(ticket.get("tier", 1)) + (0.3 if mode == "sweep" else 0.0))
    return Triage(queue=queue, urgency=urgency)


route = rtflow.container(
    "route-ticket",
    image=f"{REGISTRY}/router:1.3.0",
    args=["--queue", "{queue}", "--urgency", "{urgency}"],
    inputs={"queue": str, "urgency": float},
    secrets=[rtflow.Secret(env="HELPDESK_TOKEN", secret="helpdesk-api", key="token")],
    retry=rtflow.Retry(limit=4, policy="OnError", backoff=rtflow.Backoff("2s", factor=2)),
)

page = rtflow.container(
    "page-on-call",
    image=f"{REGISTRY}/pager:2.0.1",
    args=["--urgency", "{urgency}"],
    inputs={"urgency": float},
    secrets=[rtflow.Secret(env="PAGER_ROUTING_KEY", secret="pager", key="routing-key")],
)


new_tickets = rtflow.webhook(
    "/tickets",
    port=12000,
    auth_secret=rtflow.SecretKey("helpdesk-webhook", "token"),
    max_payload_size=1_048_576,
    inputs={"ticket": "body", "mode": rtflow.field("header.X-Mode.0", default="live")},
    filter=(rtflow.payload("body.status") == "new") | (rtflow.payload("body.priority") >= 3),
    payload_schema={"subject": str, "body": str, "status": str, "priority": int, "tier": int},
    delivery=rtflow.Delivery(
        retries=5,
        dead_letter=rtflow.DeadLetter("support-dead-letter", brokers=["kafka-0.kafka.svc:9092"]),
    ),
)

hourly_sweep = rtflow.calendar(
    "0 * * * 1-5",
    timezone="Europe/Paris",
    inputs={"mode": rtflow.constant("sweep")},
)


@rtflow.pipeline(
    name="support-triage",
    namespace="support",
    # A ticket may take seconds: the workflow plane's pod per step is fine (rtflow graph shows
    # ~14.6 s a path with Argo's default 10 s requeue, measured on the real controller); a
    # budget under a second would need the stream plane.
    latency_budget_ms=15_000,
    triggers=[new_tickets, hourly_sweep],
    event_bus=rtflow.EventBus(name="support-bus", replicas=3),
    environments=[
        # Staging tries the next classifier before production does.
        rtflow.Environment(
            "staging",
            namespace="support-staging",
            images={f"{REGISTRY}/classifier": "1.0.0-rc.2"},
            labels={"rtflow.dev/environment": "staging"},
        ),
        rtflow.Environment("prod", labels={"rtflow.dev/environment": "prod"}),
    ],
    argocd=rtflow.ArgoCD(
        repo_url="https://github.com/acme/support-deploy.git", path_prefix="manifests"
    ),
)
def support_triage(ticket: dict[str, Any] = {}, mode: str = "live") -> None:  # noqa: B006
    triage = classify(ticket=ticket, mode=mode)
    route(queue=triage.queue, urgency=triage.urgency)
    with rtflow.when(triage.urgency > 0.8):
        page(urgency=triage.urgency)
