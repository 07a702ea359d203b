"""Built-in stages: ordinary ``@rtflow.stage`` functions, usable in pipelines and locally.

Their images are ``$RTFLOW_STAGE_REGISTRY/<name>:$RTFLOW_STAGE_TAG`` (defaults below), read when
this package is imported, so a platform team can point compiled templates at its own mirror.
"""

from __future__ import annotations

import os

DEFAULT_REGISTRY = "ghcr.io/rtflow"
DEFAULT_TAG = "0.1.0"


def image(name: str) -> str:
    registry = os.environ.get("RTFLOW_STAGE_REGISTRY", DEFAULT_REGISTRY).rstrip("/")
    return f"{registry}/{name}:{os.environ.get('RTFLOW_STAGE_TAG', DEFAULT_TAG)}"
