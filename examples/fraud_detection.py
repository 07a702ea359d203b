"""Fraud detection: score every card transaction as it arrives; escalate the suspicious ones.

Transactions arrive on a Kafka topic. Each is turned into features, scored by a model served by
Triton on a GPU pool (an Argo http step: no pod per call), and the decision is published. A
score above the review threshold branches to a review by several specialised models (fanned out
in parallel) and a human analyst's approval before the card is blocked. Whatever happens, the
on-call channel hears how the run ended.

Two environments: ``prod`` (GPU pool, the production brokers) and ``kind``, a cluster without
GPUs where Triton serves the scorer on CPU (the one model whose weights it can reach) and Kafka
is the cluster's own; ``e2e/`` runs the example there.

Compile:  rtflow compile examples/fraud_detection.py -o manifests
Graph:    rtflow graph examples/fraud_detection.py
Stream:   rtflow compile examples/fraud_detection.py -o - --env kind
Locally:  python examples/models/fraud_events.py --count 10000 > /tmp/events.jsonl
          rtflow run --local examples/fraud_detection.py --events /tmp/events.jsonl
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

from models.fraud_scorer import FEATURES, FRAUD_SCORER, SERVER

import rtflow
from rtflow.stages.builtin.kafka_publish import kafka_publish

REGISTRY = "ghcr.io/acme/fraud"
BROKERS = ["kafka-0.kafka.svc:9092", "kafka-1.kafka.svc:9092", "kafka-2.kafka.svc:9092"]
REVIEW_MODELS = ["graph-risk", "merchant-history", "velocity"]
# The kind cluster of e2e/: its Kafka (SASL_SSL, SCRAM-SHA-512, its own CA in the same Secrets)
# and a CPU build of Triton (e2e/images/tritonserver-cpu.Dockerfile).
KIND_BROKERS = ["kafka.kafka.svc.cluster.local:9093"]
TRITON_CPU_IMAGE = "localhost/rtflow/tritonserver-cpu:2.51.0"
# Production's images by digest (rtflow.Environment(require_digests=True) refuses less).
PROD_IMAGES = {
    f"{REGISTRY}/card-actions": (
        "sha256:4a3ff86ca785fb8e4b282f12a236770caf053b6d3cce20ce16516ec58fa27f04"
    ),
    f"{REGISTRY}/decider": (
        "sha256:e3f0be30d6ef28b97dd6e506a29897723d0f695dfacc1ecda43319c3cc26eb02"
    ),
    f"{REGISTRY}/features": (
        "sha256:4abb6ec80da9a568f58e35f4bd9894f12fa353e64a65550c5430e89c8438dee1"
    ),
    f"{REGISTRY}/fraud-stream": (
        "sha256:a7797de36a0f89c5f52d1f1cc5582f6a2c60129746945b186485b90b38ea04de"
    ),
    f"{REGISTRY}/notifier": (
        "sha256:a7f3057c6f9d3012f732a827dc2e2de1850f8755b56ad64400e56ff8a3ecc1ff"
    ),
    f"{REGISTRY}/reviewer": (
        "sha256:7381313eec1da1ed356e83960e8291b16b02dafa32d0c813f74b86f7d4023229"
    ),
    "ghcr.io/rtflow/kafka-publish": (
        "ghcr.io/acme/mirror/kafka-publish@"
        "sha256:65cb82b6856c47ae16d6045ac7532ec2e2c272bfea7eca9798f8fdb80e2d3a65"
    ),
    "nvcr.io/nvidia/tritonserver": (
        "ghcr.io/acme/mirror/tritonserver@"
        "sha256:018f52b66a9207ca57f1a8f17312ee0a929a9ef876d7b0cb918e479f35af5200"
    ),
}

# OnFailure: a stage that exits non-zero is retried, except for a bad input (the runtime's exit
# code 65, which the compiled retry expression excludes): the same input would fail again.
retry_transient = rtflow.Retry(
    limit=3, policy="OnFailure", backoff=rtflow.Backoff("1s", factor=2, max_duration="20s")
)


class Decision(NamedTuple):
    risk: float
    action: str
    record: dict[str, Any]


@rtflow.stage(
    image=f"{REGISTRY}/features:1.4.0",
    cpu="500m",
    memory="512Mi",
    retry=retry_transient,
    timeout="30s",
)
def compute_features(transaction: dict[str, Any]) -> list[float]:
    """Turn a raw transaction into the scoring model's feature vector (in FEATURES order)."""
    hour = int(transaction.get("hour", 12))
    named = {
        "log_amount": math.log1p(float(transaction["amount"])),
        "foreign": float(transaction.get("country", "US") != transaction.get("card_country", "US")),
        "night": float(hour < 6 or hour >= 23),
        "card_not_present": float(transaction.get("channel") == "online"),
        "new_merchant": float(bool(transaction.get("first_time_merchant", False))),
    }
    return [named[name] for name in FEATURES]


@rtflow.stage(image=f"{REGISTRY}/decider:2.1.0", memory="128Mi", retry=retry_transient)
def decide(scored: dict[str, Any], transaction: dict[str, Any]) -> Decision:
    """Read the risk out of the model's KServe v2 answer and choose what to do."""
    (risk_output,) = [o for o in scored["outputs"] if o["name"] == "risk"]
    risk = float(risk_output["data"][0])
    action = "review" if risk > 0.9 else "allow"
    record = {"transaction_id": str(transaction.get("id", "")), "risk": risk, "action": action}
    return Decision(risk=risk, action=action, record=record)


@rtflow.stage(image=f"{REGISTRY}/reviewer:1.0.3", memory="1Gi", timeout="2m")
def review(features: list[float], model: str) -> dict[str, Any]:
    """One specialised model's second opinion on a suspicious transaction."""
    weight = {"graph-risk": 0.5, "merchant-history": 0.3, "velocity": 0.2}.get(model, 0.0)
    evidence = sum(features) * weight
    return {"model": model, "evidence": round(evidence, 4)}


@rtflow.stage(image=f"{REGISTRY}/reviewer:1.0.3")
def summarize(reviews: list[dict[str, Any]], risk: float) -> str:
    """One line an analyst can decide on."""
    parts = ", ".join(f"{r['model']}={r['evidence']}" for r in reviews)
    return f"risk {risk:.3f}; {parts}"


# The built-in Kafka publish stage, with this cluster's brokers and its TLS/SASL from Secrets.
publish = rtflow.configure(
    kafka_publish,
    name="publish-decision",
    env={
        "KAFKA_BROKERS": ",".join(BROKERS),
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
    },
    secrets=[
        rtflow.Secret(env="KAFKA_SASL_USERNAME", secret="kafka-credentials", key="username"),
        rtflow.Secret(env="KAFKA_SASL_PASSWORD", secret="kafka-credentials", key="password"),
        rtflow.Secret(env="KAFKA_SSL_CA_PEM", secret="kafka-ca", key="ca.crt"),
    ],
)

block_card = rtflow.container(
    "block-card",
    image=f"{REGISTRY}/card-actions:3.0.0",
    command=["/card-actions", "block"],
    args=["--reason", "{reason}"],
    inputs={"reason": str},
    secrets=[rtflow.Secret(env="CARD_API_TOKEN", secret="card-api", key="token")],
)

notify = rtflow.container(
    "notify-on-call",
    image=f"{REGISTRY}/notifier:1.0.0",
    args=["--status", "{status}", "--workflow", "{workflow}"],
    inputs={"status": str, "workflow": str},
    secrets=[rtflow.Secret(env="SLACK_WEBHOOK_URL", secret="on-call-slack", key="url")],
)


kafka_credentials = rtflow.Sasl(
    user=rtflow.SecretKey("kafka-credentials", "username"),
    password=rtflow.SecretKey("kafka-credentials", "password"),
)

transactions = rtflow.kafka(
    "transactions",
    brokers=BROKERS,
    consumer_group="fraud-detection",
    sasl=kafka_credentials,
    tls=rtflow.Tls(ca_cert=rtflow.SecretKey("kafka-ca", "ca.crt")),
    limit_events_per_second=500,
    inputs={
        "transaction": "body",
        "review_threshold": rtflow.field("body.review_threshold", default=0.9),
    },
    filter=rtflow.payload("body.type").isin(["purchase", "cash_withdrawal"])
    & (rtflow.payload("body.amount") > 0),
    payload_schema={
        "type": str,
        "amount": float,
        "country": str,
        "card_country": str,
        "channel": str,
        "hour": int,
        "first_time_merchant": bool,
        "review_threshold": float,
    },
    delivery=rtflow.Delivery(
        retries=3, rate_limit=200, dead_letter=rtflow.DeadLetter("transactions-dead-letter")
    ),
)


@rtflow.pipeline(
    name="fraud-detection",
    description="Score card transactions in real time; escalate suspicious ones to review.",
    parallelism=20,
    latency_budget_ms=35,
    deadline="1h",
    labels={"team": "risk"},
    triggers=[transactions],
    environments=[
        rtflow.Environment(
            "prod",
            namespace="fraud",
            labels={"rtflow.dev/environment": "prod"},
            # Production runs exactly the images that were tested: every one pinned by the
            # digest its registry reports (`crane digest IMAGE:TAG`), rtflow's and NVIDIA's
            # through the company mirror. (The acme registry is fictional, its digests too.)
            require_digests=True,
            images=PROD_IMAGES,
        ),
        rtflow.Environment(
            "kind",
            namespace="fraud",
            cpu_only=True,
            models={SERVER.name: [FRAUD_SCORER.name]},
            server_resources={SERVER.name: {"cpu": "500m", "memory": "1Gi", "cpu_limit": "2"}},
            images={"nvcr.io/nvidia/tritonserver": TRITON_CPU_IMAGE},
            kafka_brokers=KIND_BROKERS,
            labels={"rtflow.dev/environment": "kind"},
            pull_images=False,  # e2e/cluster.py builds the images and `kind load`s them
        ),
    ],
    argocd=rtflow.ArgoCD(
        repo_url="https://github.com/acme/fraud-deploy.git", path_prefix="manifests"
    ),
    # The hot path (features -> score -> decide -> publish) runs as long-running Kafka workers,
    # exactly once; the review branch (fan-out, approval, containers) stays on the workflow
    # plane and is reached through the hand-off topic.
    # One image holds the hot path's stage functions and rtflow[stream] (rtflow stage-dockerfile).
    stream=rtflow.Stream(
        guarantee="exactly_once", partitions=4, image=f"{REGISTRY}/fraud-stream:1.0.0"
    ),
)
def fraud_detection(transaction: dict[str, Any], review_threshold: float = 0.9) -> None:
    features = compute_features(transaction)
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {"features": features}, name="score", timeout="2s")
    decision = decide(scored, transaction)
    publish(topic="fraud-decisions", payload=decision.record, key_field="transaction_id")
    with rtflow.when(decision.risk > review_threshold):
        reviews = rtflow.for_each(REVIEW_MODELS, lambda m: review(features=features, model=m))
        summary = summarize(reviews=reviews, risk=decision.risk)
        analyst = rtflow.approval(
            "analyst-approval",
            description="Block the card? The summary is in the previous step's output.",
            after=[summary],
        )
        with rtflow.when(analyst.approved):
            block_card(reason=summary)
    with rtflow.on_exit():
        notify(status=rtflow.workflow.status, workflow=rtflow.workflow.name)
