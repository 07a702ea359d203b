"""A pipeline with dev and prod environments: Triton on a GPU pool with an HPA, a Kafka trigger
with a dead-letter topic, and two stage images (tests/test_gitops.py). Triton's image is pinned by
digest (its definition; prod's retag keeps a digest): fictional digests, no registry is reached."""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.scheduling import InstanceGroup
from rtflow.gpu.server import Autoscaling, triton_image, triton_serving
from rtflow.gpu.tensors import Tensor

L4 = gpu_pool("l4", product="NVIDIA-L4", cloud="gke", accelerator="nvidia-l4")
A10 = gpu_pool("a10", product="NVIDIA-A10G", cloud="eks", accelerator="a10g")
SCORER = triton_model(
    "scorer",
    backend="python",
    inputs=[Tensor("features", "TYPE_FP32", (3,))],
    outputs=[Tensor("risk", "TYPE_FP32", (1,))],
    max_batch_size=8,
    instance_groups=[InstanceGroup(count=1, kind="KIND_GPU")],
    repository="pvc://models/scorer",
    versions=[1],
)
SERVER = triton_serving(
    "scorer-triton",
    [SCORER],
    pool=L4,
    image=f"{triton_image('24.10')}@sha256:"
    "6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
    autoscaling=Autoscaling(metric="queue_time", target=2000, min_replicas=1, max_replicas=4),
)

orders = rtflow.kafka(
    "orders",
    brokers=["kafka.local:9092"],
    consumer_group="scoring",
    inputs={"order": "body"},
    delivery=rtflow.Delivery(retries=2, dead_letter=rtflow.DeadLetter("orders-dead-letter")),
)


@rtflow.stage(image="ghcr.io/acme/shop/features:1.0.0")
def features(order: dict[str, Any]) -> list[float]: ...


@rtflow.stage(image="ghcr.io/acme/shop/publish:1.0.0")
def publish(result: dict[str, Any]) -> None: ...


@rtflow.pipeline(
    name="scoring",
    triggers=[orders],
    environments=[
        rtflow.Environment(
            "prod",
            namespace="scoring-prod",
            images={
                "ghcr.io/acme/shop/features": "1.4.0",
                "nvcr.io/nvidia/tritonserver": "nvcr.io/nvidia/tritonserver:25.01-py3@sha256:"
                "483ebd4e35a26af67a93727f6e0077135e96223e9fc51c210e9c37877d312cd8",
            },
            replicas={"scorer-triton": 6},
            gpu_pool=gpu_pool(
                "l4-prod",
                product="NVIDIA-L4",
                cloud="gke",
                accelerator="nvidia-l4",
                node_selector={"pool": "prod"},
            ),
            kafka_brokers=["kafka-0.prod:9092", "kafka-1.prod:9092"],
            labels={"env": "prod"},
        ),
        rtflow.Environment("dev", namespace="scoring-dev", image_tag="1.5.0-rc1"),
    ],
    argocd=rtflow.ArgoCD(
        repo_url="https://github.com/acme/deploy.git", path_prefix="clusters/main"
    ),
)
def scoring(order: dict[str, Any]) -> None:
    vector = features(order)
    scored = rtflow.infer(SERVER, SCORER, {"features": vector}, timeout="2s")
    publish(scored)
