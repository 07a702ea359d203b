"""A pipeline calling a model whose weights live only in S3: a local Triton cannot load it."""

from __future__ import annotations

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.repository import model_repository
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor

EDGE_RISK = triton_model(
    "edge-risk",
    platform="onnxruntime_onnx",
    inputs=[Tensor("edges", "TYPE_INT64", (1, 2))],
    outputs=[Tensor("risk", "TYPE_FP32", (1,))],
    repository=model_repository("s3://acme-models/triton", secret="models-s3"),
    versions=[3],
)
SERVER = triton_serving(
    "edge-triton",
    [EDGE_RISK],
    cpu="1",
    memory="1Gi",
    # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.pipeline(name="remote-model", namespace="edge")
def remote_model(edges: list[int]) -> None:
    rtflow.infer(SERVER, EDGE_RISK, {"edges": edges}, name="score")
