"""The workers' NetworkPolicy: they reach Kafka, Triton and DNS, nothing else, and only
Prometheus reaches them (their metrics port).

Brokers addressed as in-cluster Services (``kafka-0.kafka.svc:9092``) are allowed by their
namespace; brokers outside the cluster can only be allowed by port (their addresses are not
known when compiling).
"""

from __future__ import annotations

from rtflow import ir
from rtflow.generators.stream.common import (
    METRICS_PORT_NAME,
    Document,
    Kafka,
    metadata,
    selector,
    stream,
)
from rtflow.generators.stream.workers import TRITON_GRPC_PORT, triton_servers
from rtflow.stream_layout import groups

NAMESPACE_LABEL = "kubernetes.io/metadata.name"


def _ports(numbers: list[int], protocol: str = "TCP") -> list[Document]:
    return [{"port": n, "protocol": protocol} for n in sorted(set(numbers))]


def _kafka_rules(kafka: Kafka) -> list[Document]:
    brokers = kafka.parsed()
    in_cluster = {b.namespace for b in brokers if b.namespace is not None}
    rules = []
    for namespace in sorted(in_cluster):
        ports = [b.port for b in brokers if b.namespace == namespace]
        rules.append(
            {
                "to": [{"namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: namespace}}}],
                "ports": _ports(ports),
            }
        )
    outside = [b.port for b in brokers if b.namespace is None]
    if outside:
        rules.append({"ports": _ports(outside)})
    return rules


def _triton_rules(pipeline: ir.Pipeline) -> list[Document]:
    from rtflow.gpu.server import selector_labels

    servers = sorted({s for g in groups(pipeline) for s in triton_servers(pipeline, g)})
    return [
        {"to": [{"podSelector": {"matchLabels": selector_labels(server)}}],
         "ports": _ports([TRITON_GRPC_PORT])}
        for server in servers
    ]  # fmt: skip


def network_policy(pipeline: ir.Pipeline, kafka: Kafka) -> Document:
    plane = stream(pipeline)
    dns = {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {NAMESPACE_LABEL: "kube-system"}},
                "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
            }
        ],
        "ports": _ports([53], "UDP") + _ports([53], "TCP"),
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(pipeline, f"{pipeline.name}-stream"),
        "spec": {
            "podSelector": {"matchLabels": selector(pipeline)},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {
                                "matchLabels": {NAMESPACE_LABEL: plane.prometheus_namespace}
                            }
                        }
                    ],
                    "ports": [{"port": METRICS_PORT_NAME, "protocol": "TCP"}],
                }
            ],
            "egress": [dns, *_kafka_rules(kafka), *_triton_rules(pipeline), *_declared(pipeline)],
        },
    }


def _declared(pipeline: ir.Pipeline) -> list[Document]:
    """What the pipeline's ``egress=`` declares and the stores its stages use (a retrieval
    store's database): the hot path's stage functions run in the workers."""
    return [
        {"to": [{"ipBlock": {"cidr": rule.cidr}}], "ports": _ports(list(rule.ports), rule.protocol)}
        for rule in pipeline.egress
    ]


def documents(pipeline: ir.Pipeline, kafka: Kafka) -> list[Document]:
    return [network_policy(pipeline, kafka)]
