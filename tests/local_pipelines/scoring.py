"""A pipeline with a Triton inference step (http) and its gRPC twin, for the local executor's
inference tests. The model is the fraud example's scorer, so a real local Triton can serve it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import rtflow

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from models.fraud_scorer import FRAUD_SCORER, POOL

from rtflow.gpu.server import triton_image, triton_serving

SERVER = triton_serving(
    "scoring-triton",
    [FRAUD_SCORER],
    pool=POOL,
    namespace="risk",
    # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.stage(image="ghcr.io/acme/scoring:1.0")
def risk_of(scored: dict[str, Any]) -> float:
    (risk,) = [o for o in scored["outputs"] if o["name"] == "risk"]
    return float(risk["data"][0])


@rtflow.pipeline(name="scoring", namespace="scoring")
def scoring(features: list[float]) -> None:
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {"features": features}, name="score", timeout="1s")
    risk_of(scored)


@rtflow.pipeline(name="scoring-grpc", namespace="scoring")
def scoring_grpc(features: list[float]) -> None:
    scored = rtflow.infer(
        SERVER, FRAUD_SCORER, {"features": features}, name="score", timeout="2s", via="grpc"
    )
    risk_of(scored)
