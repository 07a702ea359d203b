"""A stream pipeline calling a model under canary, and the controller of its rollouts.

The model ``canary-scorer`` (``canary/scorer/<version>``) answers with its version in ``which``
and the features' sum times that mark in ``total``; version 2 fails every request (a broken
candidate), versions 1 and 3 are healthy. Version 1 is the declared stable version.
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import VersionPolicy, triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.kafka_publish import kafka_publish

MODEL = "canary-scorer"


def scorer(topic: str = "rtflow-rollouts", window: str = "2s", min_requests: int = 5) -> Any:
    return triton_model(
        MODEL,
        backend="python",
        max_batch_size=8,
        inputs=[Tensor("features", "TYPE_FP32", (2,))],
        outputs=[Tensor("which", "TYPE_INT64", (1,)), Tensor("total", "TYPE_FP32", (1,))],
        repository="pvc://triton-models/canary",
        versions={v: f"canary/scorer/{v}" for v in (1, 2, 3)},
        version_policy=VersionPolicy.specific(1),
        canary=rtflow.canary(
            steps=(20, 100), window=window, min_requests=min_requests, max_error_rate=0.05,
            topic=topic,
        ),
    )  # fmt: skip


def server(model: Any) -> Any:
    return triton_serving(
        "canary-triton",
        [model],
        cpu="1",
        memory="1Gi",
        namespace="canary",
        admin_key=rtflow.SecretKey("triton-admin", "key"),
        # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
        image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
    )


def scored(serving: Any, *, source: str = "payments", results: str = "scored") -> Any:
    """The stream pipeline: every event scored by the model, the answer published."""

    @rtflow.pipeline(
        name="canary-stream",
        namespace="canary",
        latency_budget_ms=5_000,
        triggers=[
            rtflow.kafka(
                source,
                brokers=["kafka:9092"],
                consumer_group=f"{source}-scoring",
                inputs={"amount": "body.amount"},
            )
        ],
        stream=rtflow.Stream(
            # Pinned (a fictional digest: no registry is reached).
            image="ghcr.io/acme/canary/stream:test@sha256:c01144f49a36aa24115b0f3445dc819043b69e4f1eb3ebee62414688401256af",
        ),
    )
    def canary_stream(amount: float) -> None:
        answer = rtflow.infer(
            serving, MODEL, inputs={"features": [amount, 1.0]}, name="score", timeout="5s"
        )
        publish = rtflow.configure(kafka_publish, name="publish")
        publish(topic=results, payload={"amount": amount, "answer": answer})

    return canary_stream


def scored_by_workflow(serving: Any, via: str = "http") -> Any:
    """The same model called on the workflow plane (an Argo http step, or the gRPC client
    stage): compiled to the declared stable version, never the highest loaded."""

    @rtflow.pipeline(name=f"canary-workflow-{via}", namespace="canary")
    def canary_workflow(amount: float) -> None:
        rtflow.infer(serving, MODEL, inputs={"features": [amount, 1.0]}, name="score",
                     timeout="5s", via=via)  # fmt: skip

    return canary_workflow


SCORER = scorer()
SERVER = server(SCORER)
canary_stream = scored(SERVER)
canary_workflow = scored_by_workflow(SERVER)
canary_workflow_grpc = scored_by_workflow(SERVER, "grpc")
controller = rtflow.canary_rollout(
    SERVER,
    MODEL,
    brokers=["kafka:9092"],
    # Pinned (a fictional digest: no registry is reached).
    image="ghcr.io/rtflow/canary@sha256:0f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)
