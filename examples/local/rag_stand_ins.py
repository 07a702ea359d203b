"""Stand-ins for the conversational RAG example's steps that reach outside this machine.

``rtflow run --local examples/conversational_rag.py --plane workflow --stand-ins
examples/local/rag_stand_ins.py ...`` uses each function here named after a step:
``publish-answer`` publishes to the production Kafka cluster, and ``escalate`` posts to the
helpdesk's API (with the ``helpdesk-api`` Secret's bearer token, which a laptop does not
hold). Each takes the step's inputs as keyword arguments; the escalations are appended to the
file ``RAG_ESCALATIONS`` names, when it names one, so a run can be checked.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
from typing import Any

log = logging.getLogger("assistant.stand-ins")
_offsets = itertools.count()


def publish_answer(
    topic: str,
    payload: dict[str, Any],
    key_field: str = "",
    brokers: str = "",
    traceparent: str = "",
    timeout_seconds: float = 120.0,
) -> dict[str, Any]:
    """The built-in Kafka publish, without a broker: the outputs it would return."""
    return {
        "partition": 0,
        "offset": next(_offsets),
        "traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01",
    }


def escalate(body: str) -> str:
    """The helpdesk's escalation API, not called: the JSON body Argo's agent would POST."""
    escalation = json.loads(body)
    log.info("would escalate session %s", escalation["session"])
    target = os.environ.get("RAG_ESCALATIONS")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(escalation, sort_keys=True) + "\n")
    return '{"status": "queued"}'
