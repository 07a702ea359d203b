"""A pipeline calling a model whose weights live only in S3: a local Triton cannot load it."""

from __future__ import annotations

import rtflow
from rtflow.gpu.models import Tensor, model_repository, triton_model
from rtflow.gpu.serving import triton_serving

EDGE_RISK = triton_model(
    "edge-risk",
    platform="onnxruntime_onnx",
    inputs=[Tensor("edges", "TYPE_INT64", (1, 2))],
    outputs=[Tensor("risk", "TYPE_FP32", (1,))],
    repository=model_repository("s3://acme-models/triton", secret="models-s3"),
    versions=[3],
)
SERVER = triton_serving("edge-triton", [EDGE_RISK], cpu="1", memory="1Gi")


@rtflow.pipeline(name="remote-model")
def remote_model(edges: list[int]) -> None:
    rtflow.infer(SERVER, EDGE_RISK, {"edges": edges}, name="score")
