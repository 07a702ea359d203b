"""Autoscaling the workers on consumer lag: a KEDA ScaledObject with the Kafka scaler.

Why KEDA rather than an HPA on an external metric: the lag that matters is the consumer
group's, which KEDA's Kafka scaler reads from the brokers themselves (committed offsets
against the log end), with no metrics pipeline in between; an HPA would need Prometheus, an
adapter and a lag exporter to be installed, kept up and queried before it could act, and would
scale on a scrape that is already old. The scaler also knows that more consumers than
partitions is useless and stops there.

The threshold is the lag one worker clears within the pipeline's latency budget, from the
measured per-worker rate (BENCHMARKS.md, "Stream plane"): KEDA asks for
``ceil(total lag / threshold)`` workers, never more than the topic's partitions.
"""

from __future__ import annotations

import math

from rtflow import ir
from rtflow.generators.stream.common import Document, Kafka, metadata, stream, worker_name
from rtflow.stream_layout import Group, groups

WORKER_EVENTS_PER_SECOND = 20_000
"""One worker's exactly-once rate at which its p50 and p99 were measured (BENCHMARKS.md,
fraud hot path on one core); the lag threshold and the latency cost model start from it."""
DEFAULT_BUDGET_MS = 100
POLLING_SECONDS = 10
SCALE_DOWN_WINDOW_SECONDS = 300
"""Scale-down waits five minutes of lower lag: each change of worker count is a rebalance that
stops the group for a moment, and a worker starts in seconds, so scaling down eagerly only to
scale up again costs more than an idle worker."""


def lag_threshold(plane: ir.StreamPlane, budget_ms: int | None) -> int:
    return max(1, math.floor(WORKER_EVENTS_PER_SECOND * (budget_ms or DEFAULT_BUDGET_MS) / 1000))


def authentication_name(pipeline: ir.Pipeline) -> str:
    return f"{pipeline.name}-stream-kafka"


def _sasl_mode(mechanism: str) -> str:
    return {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}[
        mechanism
    ]


def scaled_object(pipeline: ir.Pipeline, group: Group, kafka: Kafka) -> Document:
    plane = stream(pipeline)
    trigger_metadata = {
        "bootstrapServers": kafka.bootstrap,
        "consumerGroup": group.consumer_group,
        "topic": group.input_topic,
        "lagThreshold": str(lag_threshold(plane, pipeline.latency_budget_ms)),
        "activationLagThreshold": "0",
        "offsetResetPolicy": "earliest",
        "allowIdleConsumers": "false",
    }
    if kafka.sasl is not None:
        trigger_metadata["sasl"] = _sasl_mode(kafka.sasl.mechanism)
    if kafka.tls is not None:
        trigger_metadata["tls"] = "enable"
    trigger: Document = {"type": "kafka", "metadata": dict(sorted(trigger_metadata.items()))}
    if kafka.secret_files():
        trigger["authenticationRef"] = {"name": authentication_name(pipeline)}
    name = worker_name(pipeline, group)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": metadata(pipeline, name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicaCount": plane.workers,
            "maxReplicaCount": plane.partitions,
            "pollingInterval": POLLING_SECONDS,
            "cooldownPeriod": SCALE_DOWN_WINDOW_SECONDS,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": SCALE_DOWN_WINDOW_SECONDS,
                            "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                        },
                    }
                }
            },
            "triggers": [trigger],
        },
    }


def trigger_authentication(pipeline: ir.Pipeline, kafka: Kafka) -> Document | None:
    """The scaler's credentials: the same Secret keys the workers mount."""
    parameters = {
        "sasl-username": "username",
        "sasl-password": "password",
        "ca.crt": "ca",
        "tls.crt": "cert",
        "tls.key": "key",
    }
    refs = [
        {"parameter": parameters[file], "name": key.secret, "key": key.key}
        for file, key in kafka.secret_files()
    ]
    if not refs:
        return None
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": metadata(pipeline, authentication_name(pipeline)),
        "spec": {"secretTargetRef": sorted(refs, key=lambda r: r["parameter"])},
    }


def documents(pipeline: ir.Pipeline, kafka: Kafka) -> list[Document]:
    found = [scaled_object(pipeline, g, kafka) for g in groups(pipeline)]
    auth = trigger_authentication(pipeline, kafka)
    return found if auth is None else [auth, *found]
