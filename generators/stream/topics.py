"""Topics as code: a Strimzi KafkaTopic for every topic the stream plane reads or writes.

Partitions are the plane's unit of parallelism (KEDA never runs more workers than the input
topic has partitions); the dead-letter topic keeps its records longer, since fixing a poison
event means replaying it. ``rtflow.Stream(topics=None)`` leaves them out.
"""

from __future__ import annotations

import hashlib
import re

from rtflow import ir
from rtflow.generators.stream.common import Document, metadata, stream
from rtflow.stream_layout import drift_state_topic, stream_topics

API_VERSION = "kafka.strimzi.io/v1"


def object_name(topic: str) -> str:
    """A DNS-1123 name for a Kafka topic name (which may hold ``_``, ``.`` and capitals); the
    real name is always in ``spec.topicName``."""
    name = re.sub(r"[^a-z0-9-]+", "-", topic.lower()).strip("-")
    if name != topic or len(name) > 63:
        digest = hashlib.sha256(topic.encode()).hexdigest()[:8]
        name = f"{name[:54].rstrip('-')}-{digest}"
    return name


def kafka_topic(pipeline: ir.Pipeline, topic: str, policy: ir.TopicPolicy) -> Document:
    plane = stream(pipeline)
    retention = (
        policy.dead_letter_retention_ms if topic == plane.dead_letter_topic else policy.retention_ms
    )
    meta = metadata(pipeline, object_name(topic), component="kafka-topic")
    meta["labels"] = dict(sorted({**meta["labels"], "strimzi.io/cluster": policy.cluster}.items()))
    return {
        "apiVersion": API_VERSION,
        "kind": "KafkaTopic",
        "metadata": meta,
        "spec": {
            "topicName": topic,
            "partitions": plane.partitions,
            "replicas": policy.replicas,
            "config": {
                "min.insync.replicas": policy.min_insync_replicas,
                "retention.ms": retention,
                # the drift windows' state: only each key's last value is ever read
                "cleanup.policy": "compact"
                if topic == drift_state_topic(pipeline.name)
                else "delete",
            },
        },
    }


def documents(pipeline: ir.Pipeline) -> list[Document]:
    policy = stream(pipeline).topics
    if policy is None:
        return []
    return [kafka_topic(pipeline, topic, policy) for topic in stream_topics(pipeline)]
