"""The model loop of docs/model-operations.md as a user writes it, small enough to run here:
a stream pipeline scoring every event with ``loop-scorer`` (under ``rtflow.canary``) and
watching its ``amount`` (``rtflow.drift``); a retraining pipeline triggered by that watch's
crossings (``rtflow.on_drift``) that "trains" the next version into Triton's model repository
and publishes it as a candidate; and the canary controller (``rtflow.canary_rollout``) that
rolls the candidate out.

``loop-scorer`` is the canary tests' healthy scorer (``canary/scorer/1``: it answers with its
version in ``which`` and the features' sum times it in ``total``); version 1 is declared and
stable. The "training" copies the stable version's code into the folder of the next version
with its version number changed: a healthy model that says which version answered.

The factories take the run suffix (``run``: each test's own topics, groups and state topics
on the shared broker) and the brokers; the module-level pipelines, what ``rtflow run --local
model_loop.py:<name>`` runs, take them from ``$RTFLOW_TEST_LOOP_RUN`` and
``$RTFLOW_TEST_BROKERS``. The retraining writes into ``$RTFLOW_TEST_LOOP_REPOSITORY`` (the
local Triton's model repository).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import rtflow
from rtflow.gpu.models import VersionPolicy, triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.builtin.kafka_publish import kafka_publish

MODEL = "loop-scorer"
BROKERS = os.environ.get("RTFLOW_TEST_BROKERS", "kafka.kafka.svc:9092")
RUN = os.environ.get("RTFLOW_TEST_LOOP_RUN", "")
# Pinned, as a cluster should run them (fictional digests: no registry is reached).
STREAM_IMAGE = (
    "ghcr.io/acme/loop/stream:1.0"
    "@sha256:5b1e9c3d7a2f4e8b0c6d1a9f3e7b2c5d8a0f4e6b1c9d3a7f2e5b8c0d4a6f1e3b"
)
TRAIN_IMAGE = (
    "ghcr.io/acme/loop/train:1.0"
    "@sha256:8d3f1b6a9c2e5d7f0a4b8c1e3d6f9a2b5c7e0d4f8a1b3c6e9d2f5a7b0c4e8d1f"
)
CANARY_IMAGE = (
    "ghcr.io/rtflow/canary@sha256:0f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5"
)
TRITON_IMAGE = (
    f"{triton_image('24.10')}"
    "@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5"
)
REFERENCE = rtflow.Reference(edges=[20, 40, 60, 80], proportions=[0.2, 0.2, 0.2, 0.2, 0.2])
"""What version 1 was trained on: ``amount`` uniform over [0, 100)."""
WINDOW = 200


def topics(run: str) -> dict[str, str]:
    return {
        "source": f"loop-payments{run}",
        "results": f"loop-scored{run}",
        "drift": f"loop-scoring-drift{run}",
        "candidates": f"{MODEL}-candidates{run}",
        "rollouts": f"loop-rollouts{run}",
    }


def scorer(run: str) -> Any:
    return triton_model(
        MODEL,
        backend="python",
        max_batch_size=8,
        inputs=[Tensor("features", "TYPE_FP32", (2,))],
        outputs=[Tensor("which", "TYPE_INT64", (1,)), Tensor("total", "TYPE_FP32", (1,))],
        repository="pvc://triton-models/loop",
        versions={1: "canary/scorer/1"},
        version_policy=VersionPolicy.specific(1),
        canary=rtflow.canary(
            steps=(50, 100), window="2s", min_requests=5, max_error_rate=0.05,
            topic=topics(run)["rollouts"],
        ),
    )  # fmt: skip


def server(model: Any) -> Any:
    return triton_serving(
        "loop-triton",
        [model],
        cpu="1",
        memory="1Gi",
        namespace="loop",
        admin_key=rtflow.SecretKey("triton-admin", "key"),
        image=TRITON_IMAGE,
    )


def scoring(run: str, brokers: str) -> Any:
    """The hot path: every event scored by the model under canary, its amount watched."""
    names = topics(run)
    serving = server(scorer(run))

    @rtflow.pipeline(
        name=f"loop-scoring{run}",
        namespace="loop",
        latency_budget_ms=5_000,
        triggers=[
            rtflow.kafka(names["source"], brokers=[brokers], consumer_group=f"loop-scoring{run}",
                         inputs={"amount": "body.amount"})
        ],
        stream=rtflow.Stream(image=STREAM_IMAGE),
    )  # fmt: skip
    def loop_scoring(amount: float) -> None:
        answer = rtflow.infer(
            serving, MODEL, inputs={"features": [amount, 1.0]}, name="score", timeout="5s"
        )
        rtflow.drift(
            amount,
            name="amount-drift",
            reference=REFERENCE,
            window=WINDOW,
            threshold=0.2,
            topic=names["drift"],
        )
        publish = rtflow.configure(kafka_publish, name="publish")
        publish(topic=names["results"], payload={"amount": amount, "answer": answer})

    return loop_scoring


@rtflow.stage(image=TRAIN_IMAGE)
def train(drift: str, psi: float) -> int:
    """Stands for a training job: writes the next version of the model into Triton's model
    repository (the stable version's code, its version number changed) and returns it."""
    folder = Path(os.environ["RTFLOW_TEST_LOOP_REPOSITORY"]) / MODEL
    versions = sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())
    stable, version = versions[0], versions[-1] + 1
    code = (folder / str(stable) / "model.py").read_text()
    trained, changed = re.subn(r"(?m)^VERSION = \d+$", f"VERSION = {version}", code)
    assert changed == 1, "the model's code has no VERSION line"
    (folder / str(version)).mkdir()
    (folder / str(version) / "model.py").write_text(trained)
    return version


publish_candidate = rtflow.configure(kafka_publish, name="publish-candidate")


def retraining(run: str, brokers: str) -> Any:
    """Started by a crossing of the drift watch; its candidate starts the canary."""
    names = topics(run)

    @rtflow.pipeline(
        name=f"loop-retrain{run}",
        namespace="loop",
        triggers=[
            rtflow.on_drift(names["drift"], brokers=[brokers], consumer_group=f"loop-retrain{run}",
                            inputs={"drift": "body.drift", "psi": "body.value"})
        ],
    )  # fmt: skip
    def loop_retrain(drift: str, psi: float) -> None:
        version = train(drift, psi)
        publish_candidate(
            topic=names["candidates"],
            payload={"model": MODEL, "version": version},
            brokers=brokers,
        )

    return loop_retrain


def controller(run: str, brokers: str) -> Any:
    model = scorer(run)
    return rtflow.canary_rollout(
        server(model),
        model,
        brokers=[brokers],
        name=f"loop-canary{run}",
        candidates_topic=topics(run)["candidates"],
        image=CANARY_IMAGE,
    )


loop_scoring = scoring(RUN, BROKERS)
loop_retrain = retraining(RUN, BROKERS)
loop_canary = controller(RUN, BROKERS)
