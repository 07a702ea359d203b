"""Stand-ins for the fraud example's stages that cannot run on a laptop as they do in a cluster.

``rtflow run --local examples/fraud_detection.py --plane workflow --stand-ins
examples/local/fraud_stand_ins.py ...`` uses every function here named after a stage (``block_card``
stands in for ``block-card``): the two container stages need Docker, and ``publish-decision``
publishes to the production Kafka cluster (SASL_SSL, credentials from Secrets). Each is called
with the stage's inputs as keyword arguments and returns its outputs; a stand-in whose
parameters do not match its stage's inputs is refused before the run starts.
"""

from __future__ import annotations

import itertools
import logging
import secrets
from typing import Any

log = logging.getLogger("fraud.stand-ins")
_offsets = itertools.count()


def block_card(reason: str) -> None:
    """The card-actions image would call the card API; here the decision is only logged."""
    log.info("would block the card: %s", reason)


def notify_on_call(status: str, workflow: str) -> None:
    """The notifier image would post to Slack; here nothing is sent."""
    log.debug("would notify on-call: %s %s", workflow, status)


def publish_decision(
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
