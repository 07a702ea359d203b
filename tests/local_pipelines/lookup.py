"""A stage that logs through the standard logging machinery and then fails: its log lines
must carry the level, the event and trace ids, and the failure's traceback."""

from __future__ import annotations

import logging
from typing import Any

import rtflow

log = logging.getLogger("checkout")


@rtflow.stage(image="ghcr.io/acme/checkout:1.0", retry=rtflow.Retry(limit=1, policy="OnFailure"))
def lookup(order: dict[str, Any]) -> str:
    log.info("looking up %s", order.get("id"))
    return str(order["missing"])


@rtflow.pipeline(name="lookup", namespace="lookup")
def lookup_pipeline(order: dict[str, Any]) -> None:
    lookup(order)
