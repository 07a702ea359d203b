"""A drift watch on an inference output, with the fraud example's own features and model
(``risk`` of ``fraud-scorer`` on a real Triton): ``rtflow.drift(scored.output("risk"), ...)``.
The decisions go to a results topic, so a test can compare the watched values with the
answers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

import dataclasses  # noqa: E402

from fraud_detection import compute_features, decide  # noqa: E402
from models.fraud_scorer import FRAUD_SCORER  # noqa: E402
from models.fraud_scorer import SERVER as EXAMPLE_SERVER  # noqa: E402

import rtflow  # noqa: E402

STREAM_IMAGE = (
    "ghcr.io/acme/fraud/stream:1.0"
    "@sha256:5b0c3f7e2d6a9184c1e0b7f3a2d5c8e9f1b4a7d0c3e6f9a2b5d8e1f4a7c0b3d6"
)
# The example's server with its image pinned, as a cluster should run it (production pins it
# in its overlay; the digest is fictional: no registry is reached).
SERVER = dataclasses.replace(
    EXAMPLE_SERVER,
    image=f"{EXAMPLE_SERVER.image}@sha256:018f52b66a9207ca57f1a8f17312ee0a929a9ef876d7b0cb918e479f35af5200",
)

EDGES = [0.05, 0.2, 0.5]
REFERENCE = rtflow.Reference(edges=EDGES, proportions=[0.7, 0.2, 0.07, 0.03])


@rtflow.pipeline(
    name="risk-drift",
    namespace="drift",
    triggers=[
        rtflow.kafka("risk-transactions", brokers="kafka.invalid:9092",
                     inputs={"transaction": "body"})
    ],
    stream=rtflow.Stream(results_topic="risk-results", image=STREAM_IMAGE),
)  # fmt: skip
def risk_drift(transaction: dict[str, Any]) -> None:
    features = compute_features(transaction)
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {"features": features}, name="score")
    decide(scored, transaction)
    rtflow.drift(scored.output("risk"), name="risk-drift", reference=REFERENCE, window=200)
