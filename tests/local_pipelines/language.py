"""Pipelines of the language features (otherwise, approval timeout, default timeout, http),
at module level so the local run's stage workers can import them. The http pipelines read the
server's address from ``$RTFLOW_TEST_HTTP`` (a real server on 127.0.0.1 the test starts)."""

from __future__ import annotations

import os
import time
from typing import Any

import rtflow

IMAGE = "ghcr.io/acme/lang:1.0"
SERVER = os.environ.get("RTFLOW_TEST_HTTP", "http://127.0.0.1:9")


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


@rtflow.pipeline(name="branches")
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


@rtflow.pipeline(name="gated")
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


@rtflow.pipeline(name="deadlines", default_timeout=1)
def deadlines(seconds: float) -> None:
    nap(seconds)
    patient(seconds)


@rtflow.stage(image=IMAGE)
def read_echo(answer: dict[str, Any]) -> str:
    return f"{answer['method']} {answer['path']} {answer['json']['user']}"


@rtflow.stage(image=IMAGE)
def make_user(name: str) -> str:
    return name.title()


@rtflow.pipeline(name="calls")
def calls(name: str, note: str) -> None:
    user = make_user(name)
    echoed = rtflow.http(
        f"{SERVER}/echo?x=1",
        method="POST",
        json={"user": user, "note": note, "n": [1, 2.5]},
        headers={"X-Request-Id": "rtflow-test"},
        secret_headers={"Authorization": rtflow.SecretKey("echo-api", "bearer")},
        returns=dict[str, Any],
        name="echo",
    )
    read_echo(echoed)
    rtflow.http(f"{SERVER}/text", method="PUT", body=note, name="put-text", timeout="5s")
    rtflow.http(f"{SERVER}/missing", name="missing", success_status={200, 404})
