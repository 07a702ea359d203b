"""A pipeline in its own namespace ("rag") with a Triton server declared without one, called
over HTTP and gRPC, started by a webhook and a Kafka topic; its staging environment moves it
to "rag-staging", prod keeps the pipeline's namespace (tests/test_namespaces.py). Images are
pinned by digest as production wants them: Triton's in its definition (every environment), the
stages' by prod's images= under require_digests (fictional digests: no registry is reached)."""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.scheduling import InstanceGroup
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor

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
TRITON = triton_image("24.10")
SERVER = triton_serving(
    "rag-triton",
    [RANKER],
    image=f"{TRITON}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)

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
        rtflow.Environment(
            "prod",
            labels={"env": "prod"},
            require_digests=True,
            images={
                "ghcr.io/acme/rag/embed": (
                    "sha256:4f9402ef44566f2edc0cf6fd94ee72591b468f1b0061b15d99a67c95b39caab6"
                ),
                "ghcr.io/acme/rag/answer": (
                    "sha256:e790bab4e98b6bb0161a10436e3540efec2ada070db56d226a0e49269d05e50e"
                ),
                # rtflow publishes no digest for its own images: built and pushed to a mirror.
                "ghcr.io/rtflow/triton-client": (
                    "ghcr.io/acme/mirror/triton-client@"
                    "sha256:43c0112d3e4d04e396736e8625aeb2d7058f7469aa4a41405f077bf251eefb90"
                ),
            },
        ),
    ],
)
def rag(question: dict[str, Any]) -> None:
    vector = embed(question)
    ranked = rtflow.infer(SERVER, RANKER, {"features": vector}, name="rank")
    again = rtflow.infer(SERVER, RANKER, {"features": vector}, name="rank-grpc", via="grpc")
    answer(ranked, again)
