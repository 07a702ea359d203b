"""Drift-triggered retraining, as a user writes it: a stream pipeline that scores readings and
watches their ``amount`` (``rtflow.drift``), and a workflow-plane pipeline that retrains when
the drift topic says the threshold was crossed (``rtflow.on_drift``) and publishes the
candidate for the canary. ``scored_drift`` watches an inference output instead (compiled and
planned only: the end-to-end test watches the payload feature).

The reference is ``amount`` uniform over [0, 100): five bins of 20 % each. The brokers the
retraining publishes to come from ``$RTFLOW_TEST_BROKERS``; the retraining writes a file per
run into ``$RTFLOW_TEST_RETRAIN_DIR`` (what the test checks); ``$RTFLOW_TEST_DRIFT_RUN``
suffixes the topics and consumer groups, so that each test has its own on the shared broker;
``$RTFLOW_TEST_DRIFT_SLOW`` makes scoring take that many seconds an event (to kill a worker
mid-stream).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.kafka_publish import kafka_publish

BROKERS = os.environ.get("RTFLOW_TEST_BROKERS", "kafka.kafka.svc:9092")
RUN = os.environ.get("RTFLOW_TEST_DRIFT_RUN", "")  # a test's own topics and groups on one broker
READINGS = f"drift-readings{RUN}"
DRIFT_TOPIC = f"drift-scoring-drift{RUN}"
CANDIDATES = f"fraud-scorer-candidates{RUN}"
# Pinned, as a cluster should run them (fictional digests: no registry is reached).
SCORING_IMAGE = (
    "ghcr.io/acme/drift-scoring:1.0"
    "@sha256:c4a1e8f2b7d03956a1c8e4f7b2d5a9c0e3f6b1d4a7c2e5f8b0d3a6c9e1f4b7d2"
)
RETRAIN_IMAGE = (
    "ghcr.io/acme/retrain:1.0"
    "@sha256:7e2b9d4f1a6c8e3b5d0f2a7c9e4b1d6f8a3c5e0b2d7f9a1c4e6b8d0f3a5c7e9b"
)
REFERENCE = rtflow.Reference(edges=[20, 40, 60, 80], proportions=[0.2, 0.2, 0.2, 0.2, 0.2])


SLOW = float(os.environ.get("RTFLOW_TEST_DRIFT_SLOW", "0"))  # seconds per event (crash tests)


@rtflow.stage(image=SCORING_IMAGE)
def score(amount: float) -> float:
    if SLOW:
        time.sleep(SLOW)
    return min(1.0, amount / 100.0)


@rtflow.pipeline(
    name="drift-scoring",
    namespace="drift",
    triggers=[
        rtflow.kafka(READINGS, brokers=BROKERS, consumer_group=f"drift-scoring{RUN}",
                     inputs={"amount": "body.amount"})
    ],
    # batches of 150 against windows of 200: a window closes inside a batch, and a worker
    # killed mid-stream leaves a partial window behind
    stream=rtflow.Stream(partitions=2, workers=1, max_events=150,
                         image=SCORING_IMAGE),
)  # fmt: skip
def drift_scoring(amount: float) -> None:
    score(amount)
    rtflow.drift(
        amount,
        name="amount-drift",
        reference=REFERENCE,
        window=200,
        threshold=0.2,
        topic=DRIFT_TOPIC,
    )


@rtflow.stage(image=RETRAIN_IMAGE)
def retrain_model(drift: str, psi: float) -> int:
    """Stands for a training job: records the run, returns the new version."""
    folder = Path(os.environ.get("RTFLOW_TEST_RETRAIN_DIR", "/tmp"))
    runs = sorted(folder.glob("retrain-*.json"))
    version = len(runs) + 2
    (folder / f"retrain-{version}.json").write_text(json.dumps({"drift": drift, "psi": psi}))
    return version


publish_candidate = rtflow.configure(kafka_publish, name="publish-candidate")


@rtflow.pipeline(
    name="drift-retrain",
    namespace="drift",
    triggers=[
        rtflow.on_drift(DRIFT_TOPIC, brokers=BROKERS, consumer_group=f"drift-retrain{RUN}",
                        inputs={"drift": "body.drift", "psi": "body.value"})
    ],
)  # fmt: skip
def drift_retrain(drift: str, psi: float) -> None:
    version = retrain_model(drift, psi)
    publish_candidate(
        topic=CANDIDATES,
        payload={"model": "fraud-scorer", "version": version},
        brokers=BROKERS,
    )


RISK = triton_model(
    "drift-risk",
    backend="python",
    max_batch_size=8,
    inputs=[Tensor("features", "TYPE_FP32", (2,))],
    outputs=[Tensor("risk", "TYPE_FP32", (1,))],
    repository="pvc://triton-models/drift",
    versions={1: "drift/risk/1"},
)
SERVER = triton_serving(
    "drift-triton",
    [RISK],
    cpu="1",
    memory="1Gi",
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.pipeline(
    name="scored-drift",
    namespace="drift",
    triggers=[rtflow.kafka("scored-readings", brokers=BROKERS, inputs={"amount": "body.amount"})],
    stream=rtflow.Stream(partitions=2, image=SCORING_IMAGE),
)
def scored_drift(amount: float) -> Any:
    scored = rtflow.infer(SERVER, RISK, {"features": [amount, amount]})
    rtflow.drift(
        scored.output("risk"),
        name="risk-drift",
        reference=rtflow.Reference.from_sample([i / 1000 for i in range(1000)], bins=4),
        window=1000,
        threshold=0.25,
    )
