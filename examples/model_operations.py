"""Model operations on the fraud hot path: route, cache, canary, drift -> retrain -> canary.

Three pipelines from one file, and one loop between them:

* ``fraud-scoring`` (the stream plane): every transaction is scored by ``fraud-scorer``, or by
  ``fraud-scorer-high-value`` when its amount is above 1,000 (``rtflow.route``: one inference
  step per model, each micro-batching its own events). Both models let Triton answer a
  repeated request from its response cache, and the stream workers keep an answer cache of
  their own. ``fraud-scorer`` rolls out new versions as canaries (``rtflow.canary``): the
  workers send each version its share of events. The workers watch the amounts' distribution
  against the one the model was trained on (``rtflow.drift``: population stability index per
  window of 20,000 transactions) and publish each window's figure to ``fraud-scoring-drift``.
* ``fraud-retrain`` (the workflow plane): started by a window whose PSI crosses 0.2
  (``rtflow.on_drift``); trains a new version into the model repository and publishes it to
  ``fraud-scorer-candidates``.
* ``fraud-scorer-canary``: the canary controller (``rtflow.canary_rollout``), started by a
  candidate: Triton loads the new version beside the stable one, the candidate gets 5 %, then
  25 %, 50 % and 100 % of the events, each step judged on Triton's and the workers' error rate
  and p99 over a window; a regression rolls it back at once, a clean run promotes it.

Compile:  rtflow compile examples/model_operations.py -o manifests
Lint:     rtflow lint examples/model_operations.py
Graph:    rtflow graph examples/model_operations.py
The loop: docs/model-operations.md
"""

from __future__ import annotations

import math
from typing import Any

from models.fraud_scorer import FEATURES

import rtflow
from rtflow.gpu.models import DynamicBatching, InstanceGroup, Tensor, triton_model
from rtflow.gpu.serving import triton_serving
from rtflow.stages.builtin.kafka_publish import kafka_publish

REGISTRY = "ghcr.io/acme/fraud"
BROKERS = ["kafka-0.kafka.svc:9092", "kafka-1.kafka.svc:9092", "kafka-2.kafka.svc:9092"]
HIGH_VALUE = 1_000.0
# Images by digest, as production runs them (the acme registry is fictional, its digests too).
SCORING_IMAGE = (
    f"{REGISTRY}/fraud-stream:1.1.0"
    "@sha256:9a0f5c1b7e1d2a3c4b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3"
)
TRAINER_IMAGE = (
    f"{REGISTRY}/trainer:2.0.0"
    "@sha256:1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90a"
)
TRITON_IMAGE = (
    "nvcr.io/nvidia/tritonserver:24.10-py3"
    "@sha256:018f52b66a9207ca57f1a8f17312ee0a929a9ef876d7b0cb918e479f35af5200"
)


def scorer(name: str, **operations: Any) -> Any:
    """A fraud scorer on Triton: the Python-backend logistic model of the fraud example."""
    return triton_model(
        name,
        backend="python",
        inputs=[Tensor("features", "TYPE_FP32", (len(FEATURES),))],
        outputs=[Tensor("risk", "TYPE_FP32", (1,))],
        max_batch_size=1024,
        dynamic_batching=DynamicBatching(max_queue_delay_microseconds=500),
        instance_groups=[InstanceGroup(count=2, kind="KIND_CPU")],
        repository="pvc://triton-models/fraud",
        # Triton answers a repeated request without running the model; each stream worker
        # also keeps the answers of the last 100,000 distinct requests.
        response_cache=True,
        client_cache=100_000,
        **operations,
    )


FRAUD_SCORER = scorer(
    "fraud-scorer",
    versions=[1],
    # New versions (from fraud-retrain) go to 5 %, 25 %, 50 %, then all of the events, two
    # minutes a step; a step with more than 1 % errors or a p99 above 20 ms rolls it back.
    canary=rtflow.canary(
        steps=(5, 25, 50, 100),
        window="2m",
        min_requests=2_000,
        max_error_rate=0.01,
        max_p99_ms=20,
    ),
)
HIGH_VALUE_SCORER = scorer("fraud-scorer-high-value", versions=[4])

SERVER = triton_serving(
    "fraud-ops-triton",
    [FRAUD_SCORER, HIGH_VALUE_SCORER],
    cpu="4",
    memory="8Gi",
    namespace="fraud-ops",
    image=TRITON_IMAGE,
    # The canary controller loads and unloads versions through Triton's repository API,
    # which only the holder of this key may call.
    admin_key=rtflow.SecretKey("fraud-triton-admin", "key"),
)

# The amounts the deployed model was trained on: five bins, and each one's share of them.
TRAINED_AMOUNTS = rtflow.Reference(
    edges=[10, 50, 200, HIGH_VALUE], proportions=[0.25, 0.35, 0.25, 0.12, 0.03]
)


@rtflow.stage(image=SCORING_IMAGE)
def features(transaction: dict[str, Any]) -> list[float]:
    """The scorer's features, in FEATURES order."""
    hour = int(transaction.get("hour", 12))
    named = {
        "log_amount": math.log1p(float(transaction["amount"])),
        "foreign": float(transaction.get("country", "US") != transaction.get("card_country", "US")),
        "night": float(hour < 6 or hour >= 23),
        "card_not_present": float(transaction.get("channel") == "online"),
        "new_merchant": float(bool(transaction.get("first_time_merchant", False))),
    }
    return [named[name] for name in FEATURES]


@rtflow.stage(image=SCORING_IMAGE)
def decide(risk: list[float], transaction: dict[str, Any]) -> dict[str, Any]:
    """Block above 0.9, review above 0.5, else approve."""
    action = "block" if risk[0] > 0.9 else "review" if risk[0] > 0.5 else "approve"
    return {"transaction_id": transaction.get("id"), "risk": risk[0], "action": action}


publish_decision = rtflow.configure(kafka_publish, name="publish-decision")


@rtflow.pipeline(
    name="fraud-scoring",
    namespace="fraud-ops",
    description="Score card transactions; route, cache and canary the models; watch drift.",
    latency_budget_ms=35,
    triggers=[
        rtflow.kafka(
            "transactions",
            brokers=BROKERS,
            consumer_group="fraud-scoring",
            inputs={"transaction": "body", "amount": "body.amount"},
            payload_schema={"amount": float},
        )
    ],
    stream=rtflow.Stream(guarantee="exactly_once", partitions=8, image=SCORING_IMAGE),
)
def fraud_scoring(transaction: dict[str, Any], amount: float) -> None:
    vector = features(transaction)

    def publish(answer: rtflow.InferenceResult) -> None:
        decision = decide(answer.output("risk"), transaction)
        publish_decision(topic="fraud-decisions", payload=decision, key_field="transaction_id")

    rtflow.route(
        SERVER,
        {HIGH_VALUE_SCORER: amount > HIGH_VALUE},
        default=FRAUD_SCORER,
        inputs={"features": vector},
        then=publish,
        name="score",
        timeout="2s",
    )
    rtflow.drift(
        amount,
        name="amount-drift",
        reference=TRAINED_AMOUNTS,
        window=20_000,
        threshold=0.2,
        topic="fraud-scoring-drift",
    )


@rtflow.stage(image=TRAINER_IMAGE, cpu="4", memory="16Gi", timeout="2h")
def retrain(psi: float) -> int:
    """Train fraud-scorer on the last 30 days, write it as the next version folder of the
    model repository, and return that version (stands for the team's training job)."""
    raise NotImplementedError("runs in the trainer image")


publish_candidate = rtflow.configure(kafka_publish, name="publish-candidate")


@rtflow.pipeline(
    name="fraud-retrain",
    namespace="fraud-ops",
    description="Retrain fraud-scorer when the amounts drift; hand the result to the canary.",
    deadline="3h",
    triggers=[
        rtflow.on_drift(
            "fraud-scoring-drift",
            brokers=BROKERS,
            drift_name="amount-drift",
            consumer_group="fraud-retrain",
            inputs={"psi": "body.value"},
        )
    ],
)
def fraud_retrain(psi: float) -> None:
    version = retrain(psi)
    publish_candidate(
        topic="fraud-scorer-candidates",
        payload={"version": version},
        brokers=",".join(BROKERS),
    )


fraud_scorer_canary = rtflow.canary_rollout(SERVER, FRAUD_SCORER, brokers=BROKERS)
