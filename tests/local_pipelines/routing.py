"""Pipelines that route one request among two models by a payload field (``rtflow.route``).

The models (``routes/small/1``, ``routes/large/1``) take the same two features and say which
of them answered (``which``: 1 or 2) with the features' sum times that mark (``total``).
Both enable Triton's response cache and the stream workers' answer cache.
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.kafka_publish import kafka_publish


def scorer(name: str) -> Any:
    return triton_model(
        name,
        backend="python",
        max_batch_size=8,
        inputs=[Tensor("features", "TYPE_FP32", (2,))],
        outputs=[Tensor("which", "TYPE_INT64", (1,)), Tensor("total", "TYPE_FP32", (1,))],
        repository="pvc://triton-models/routes",
        versions={1: f"routes/{name}/1"},
        response_cache=True,
        client_cache=1000,
    )


SMALL = scorer("small")
LARGE = scorer("large")
SERVER = triton_serving(
    "route-triton",
    [SMALL, LARGE],
    cpu="1",
    memory="1Gi",
    # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.stage(image="ghcr.io/acme/routes:1.0")
def answered(which: list[int], total: list[float], tier: str) -> dict[str, Any]:
    return {"tier": tier, "which": which[0], "total": total[0]}


def read(tier: str) -> Any:
    def then(answer: rtflow.InferenceResult) -> None:
        answered(answer.output("which"), answer.output("total"), tier)

    return then


@rtflow.pipeline(name="routed", namespace="routes")
def routed(amount: float, tier: str) -> None:
    rtflow.route(
        SERVER,
        {"large": tier == "premium"},
        default="small",
        inputs={"features": [amount, 1.0]},
        then=read(tier),
        name="score",
        timeout="5s",
    )


@rtflow.pipeline(
    name="routed-stream",
    namespace="routes",
    latency_budget_ms=2_000,
    triggers=[
        rtflow.kafka(
            "payments",
            brokers=["kafka:9092"],
            consumer_group="routes",
            inputs={"amount": "body.amount", "tier": "body.tier"},
        )
    ],
    stream=rtflow.Stream(
        # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
        image="ghcr.io/acme/routes/stream:test@sha256:c01144f49a36aa24115b0f3445dc819043b69e4f1eb3ebee62414688401256af",
    ),
)
def routed_stream(amount: float, tier: str) -> None:
    publish = rtflow.configure(kafka_publish, name="publish")

    def then(answer: rtflow.InferenceResult) -> None:
        publish(topic="scored", payload={"tier": tier, "amount": amount, "answer": answer})

    rtflow.route(
        SERVER,
        {"large": tier == "premium"},
        default=SMALL,
        inputs={"features": [amount, 1.0]},
        then=then,
        name="score",
        timeout="5s",
    )
