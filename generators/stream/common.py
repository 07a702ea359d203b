"""What the stream plane's generators share: names, labels, and the Kafka cluster the workers
reach (addresses and the Secrets of its TLS and SASL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rtflow import ir
from rtflow import stream_layout as layout
from rtflow.generators import labels
from rtflow.stream_layout import Group

Document = dict[str, Any]
COMPONENT = "stream-worker"
METRICS_PORT_NAME = "metrics"
SECRETS_DIR = "/var/run/secrets/rtflow/kafka"


def stream(pipeline: ir.Pipeline) -> ir.StreamPlane:
    assert pipeline.stream is not None
    return pipeline.stream


def worker_name(pipeline: ir.Pipeline, group: Group) -> str:
    """``<pipeline>-stream`` for the first fused group, ``-stream-<n>`` after each hop."""
    return layout.worker_name(pipeline.name, group)


def service_account(pipeline: ir.Pipeline) -> str:
    return f"{pipeline.name}-stream"


def metadata(pipeline: ir.Pipeline, name: str, component: str = COMPONENT) -> Document:
    meta: Document = {"name": name}
    if pipeline.namespace:
        meta["namespace"] = pipeline.namespace
    meta["labels"] = labels.standard_labels(pipeline, component)
    return meta


def selector(pipeline: ir.Pipeline, group: Group | None = None) -> dict[str, str]:
    """The workers' pods (of one group, or all): stable labels, never the user's."""
    found = {labels.COMPONENT: COMPONENT, labels.PIPELINE: pipeline.name}
    if group is not None:
        found[labels.NAME] = worker_name(pipeline, group)
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class Broker:
    host: str
    port: int

    @property
    def namespace(self) -> str | None:
        """The namespace of an in-cluster Service address (``name.ns.svc[.cluster.local]``)."""
        parts = self.host.split(".")
        if len(parts) >= 3 and parts[2] == "svc":
            return parts[1]
        return None


@dataclass(frozen=True)
class Kafka:
    """The cluster the workers reach: its brokers and, from the trigger, its TLS and SASL."""

    brokers: tuple[str, ...]
    tls: ir.Tls | None
    sasl: ir.Sasl | None

    @classmethod
    def of(cls, pipeline: ir.Pipeline, brokers: Sequence[str] | None) -> Kafka:
        (source,) = [t.source for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
        assert isinstance(source, ir.KafkaSource)
        return cls(tuple(brokers or source.brokers), source.tls, source.sasl)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.brokers)

    def parsed(self) -> list[Broker]:
        found = []
        for address in self.brokers:
            host, _, port = address.rpartition(":")
            found.append(Broker(host, int(port)))
        return found

    @property
    def protocol(self) -> str:
        if self.sasl is not None:
            return "SASL_SSL" if self.tls is not None else "SASL_PLAINTEXT"
        return "SSL" if self.tls is not None else "PLAINTEXT"

    def secret_files(self) -> list[tuple[str, ir.SecretKey]]:
        """(file name under SECRETS_DIR, Secret key) for every credential the workers mount."""
        files: list[tuple[str, ir.SecretKey | None]] = []
        if self.sasl is not None:
            files += [("sasl-username", self.sasl.user), ("sasl-password", self.sasl.password)]
        if self.tls is not None:
            files += [
                ("ca.crt", self.tls.ca_cert),
                ("tls.crt", self.tls.client_cert),
                ("tls.key", self.tls.client_key),
            ]
        return [(name, key) for name, key in files if key is not None]
