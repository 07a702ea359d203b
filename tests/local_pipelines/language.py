"""Pipelines and stages of the language features (otherwise, approval timeout, default
timeout, http), at module level so the local run's stage workers can import them (the http
tests build their pipelines around a real server's address on 127.0.0.1)."""

from __future__ import annotations

import time
from typing import Any

import rtflow

IMAGE = "ghcr.io/acme/lang:1.0"


@rtflow.stage(image=IMAGE)
def score(amount: float) -> float:
    return round(amount / 100.0, 4)


@rtflow.stage(image=IMAGE)
def high(risk: float) -> str:
    return f"high {risk}"


@rtflow.stage(image=IMAGE)
def low(risk: float) -> str:
    return f"low {risk}"


@rtflow.stage(image=IMAGE)
def middle(risk: float) -> str:
    return f"middle {risk}"


@rtflow.stage(image=IMAGE)
def always(risk: float) -> str:
    return f"always {risk}"


@rtflow.pipeline(name="branches", namespace="language")
def branches(amount: float) -> None:
    """high above 0.8; else middle above 0.3; else low: a nested otherwise."""
    risk = score(amount)
    with rtflow.when(risk > 0.8):
        high(risk)
    with rtflow.otherwise():
        with rtflow.when(risk > 0.3):
            middle(risk)
        with rtflow.otherwise():
            low(risk)
    always(risk)


@rtflow.stage(image=IMAGE)
def act(decision: str) -> str:
    return f"acted on {decision}"


@rtflow.pipeline(name="gated", namespace="language")
def gated(amount: float) -> None:
    risk = score(amount)
    with rtflow.when(risk > 0.5):
        review = rtflow.approval("review", timeout=1, on_timeout="approve", after=[risk])
        with rtflow.when(review.approved):
            act(review.decision)
        with rtflow.otherwise():
            low(risk)


@rtflow.stage(image=IMAGE)
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@rtflow.stage(image=IMAGE, timeout=30)
def patient(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@rtflow.pipeline(name="deadlines", namespace="language", default_timeout=1)
def deadlines(seconds: float) -> None:
    nap(seconds)
    patient(seconds)


@rtflow.stage(image=IMAGE)
def read_echo(answer: dict[str, Any]) -> str:
    return f"{answer['method']} {answer['path']} {answer['json']['user']}"


@rtflow.stage(image=IMAGE)
def make_user(name: str) -> str:
    return name.title()
