"""List and dict literals holding outputs and inputs (``rank(scored=[s, 2.0])``,
``send(payload={"u": user, ...})``): the same pipeline on the workflow plane (the local run)
and on the stream plane (its Plan), both reading the literal the way Argo assembles it."""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.stages.builtin.kafka_publish import kafka_publish

IMAGE = "ghcr.io/acme/literals:1.0"


@rtflow.stage(image=IMAGE)
def score(event: dict[str, Any]) -> float:
    return float(event["amount"]) / 100


@rtflow.stage(image=IMAGE)
def shout(user: str) -> str:
    return user.upper()


@rtflow.stage(image=IMAGE)
def rank(scored: list[float]) -> float:
    return max(scored)


@rtflow.stage(image=IMAGE)
def envelope(payload: dict[str, Any], names: list[str]) -> dict[str, Any]:
    return {"payload": payload, "names": names}


@rtflow.pipeline(name="literals", namespace="literals")
def literals(event: dict[str, Any], user: str, weight: int = 3) -> None:
    s = score(event)
    loud = shout(user)
    best = rank(scored=[s, 2.0, weight])
    envelope(
        payload={"u": user, "best": best, "nested": {"loud": loud, "both": [s, weight]}},
        names=[user, loud, "plain"],
    )


@rtflow.pipeline(
    name="literals-stream",
    namespace="literals",
    latency_budget_ms=500,
    triggers=[
        rtflow.kafka(
            "events",
            brokers=["kafka:9092"],
            consumer_group="literals",
            inputs={"event": "body.event", "user": "body.user"},
        )
    ],
    stream=rtflow.Stream(
        # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
        image="ghcr.io/acme/literals/stream:test@sha256:c01144f49a36aa24115b0f3445dc819043b69e4f1eb3ebee62414688401256af",
    ),
)
def literals_stream(event: dict[str, Any], user: str) -> None:
    s = score(event)
    loud = shout(user)
    best = rank(scored=[s, 2.0])
    answer = envelope(payload={"u": user, "best": best}, names=[user, loud])
    publish = rtflow.configure(kafka_publish, name="publish")
    publish(topic="answers", payload={"answer": answer, "who": [user, loud], "n": 1})
