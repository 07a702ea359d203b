"""The stream plane's Kubernetes objects, from the same definition as the workflow plane.

One module per concept: ``workers`` (the Deployment of each fused group, its ServiceAccount and
PodDisruptionBudget), ``scaling`` (KEDA on consumer lag), ``topics`` (Strimzi KafkaTopics),
``network`` (the workers' NetworkPolicy) and ``monitoring`` (PodMonitors and alerts). Each is a
pure function of the IR; :func:`documents` puts them together for the compiler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rtflow import ir
from rtflow.generators.stream import monitoring, network, scaling, topics, workers
from rtflow.generators.stream.common import Document, Kafka


def documents(
    pipeline: ir.Pipeline,
    *,
    brokers: Sequence[str] | None = None,
    resources: Mapping[str, ir.Resources] | None = None,
) -> list[Document]:
    """Every stream-plane object of ``pipeline`` (none without ``stream=``); ``brokers``
    replaces the trigger's and ``resources`` a worker Deployment's (an environment's
    ``kafka_brokers`` and ``worker_resources``)."""
    if pipeline.stream is None:
        return []
    kafka = Kafka.of(pipeline, brokers)
    found = workers.documents(pipeline, kafka, resources or {})
    found += scaling.documents(pipeline, kafka)
    found += topics.documents(pipeline)
    found += network.documents(pipeline, kafka)
    found += monitoring.documents(pipeline)
    return found
