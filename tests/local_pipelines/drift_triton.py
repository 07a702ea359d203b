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

from fraud_detection import compute_features, decide  # noqa: E402
from models.fraud_scorer import FRAUD_SCORER, SERVER  # noqa: E402

import rtflow  # noqa: E402

EDGES = [0.05, 0.2, 0.5]
REFERENCE = rtflow.Reference(edges=EDGES, proportions=[0.7, 0.2, 0.07, 0.03])


@rtflow.pipeline(
    name="risk-drift",
    namespace="drift",
    triggers=[
        rtflow.kafka("risk-transactions", brokers="kafka.invalid:9092",
                     inputs={"transaction": "body"})
    ],
    stream=rtflow.Stream(results_topic="risk-results", image="ghcr.io/acme/fraud/stream:1.0"),
)  # fmt: skip
def risk_drift(transaction: dict[str, Any]) -> None:
    features = compute_features(transaction)
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {"features": features}, name="score")
    decide(scored, transaction)
    rtflow.drift(scored.output("risk"), name="risk-drift", reference=REFERENCE, window=200)
