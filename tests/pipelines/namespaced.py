"""A pipeline in its own namespace ("rag") with a Triton server declared without one, called
over HTTP and gRPC, started by a webhook and a Kafka topic; its staging environment moves it
to "rag-staging", prod keeps the pipeline's namespace (tests/test_namespaces.py)."""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import InstanceGroup, Tensor, triton_model
from rtflow.gpu.serving import triton_serving

RANKER = triton_model(
    "ranker",
    backend="python",
    inputs=[Tensor("features", "TYPE_FP32", (3,))],
    outputs=[Tensor("score", "TYPE_FP32", (1,))],
    max_batch_size=8,
    instance_groups=[InstanceGroup(count=1, kind="KIND_CPU")],
    repository="pvc://models/ranker",
    versions=[1],
)
SERVER = triton_serving("rag-triton", [RANKER])

questions = rtflow.webhook(
    "/ask", auth_secret=rtflow.SecretKey("rag-webhook", "token"), inputs={"question": "body"}
)
documents = rtflow.kafka(
    "documents",
    brokers=["kafka.local:9092"],
    consumer_group="rag",
    inputs={"question": "body"},
    delivery=rtflow.Delivery(dead_letter=rtflow.DeadLetter("documents-dead-letter")),
)


@rtflow.stage(image="ghcr.io/acme/rag/embed:1.0.0")
def embed(question: dict[str, Any]) -> list[float]: ...


@rtflow.stage(image="ghcr.io/acme/rag/answer:1.0.0")
def answer(ranked: dict[str, Any], again: dict[str, Any]) -> None: ...


@rtflow.pipeline(
    name="rag",
    namespace="rag",
    triggers=[questions, documents],
    environments=[
        rtflow.Environment("staging", namespace="rag-staging"),
        rtflow.Environment("prod", labels={"env": "prod"}),
    ],
)
def rag(question: dict[str, Any]) -> None:
    vector = embed(question)
    ranked = rtflow.infer(SERVER, RANKER, {"features": vector}, name="rank")
    again = rtflow.infer(SERVER, RANKER, {"features": vector}, name="rank-grpc", via="grpc")
    answer(ranked, again)
