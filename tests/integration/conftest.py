"""Session fixtures for tests that need a real component, started once and shared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from components import component_missing

from rtflow.testing.kafka_broker import KafkaBroker, KafkaUnavailable


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """One Kafka broker for the session: a start costs seconds, a fresh topic milliseconds.

    Tests share it, so each uses topics of its own. A missing prerequisite (java 17+, the jars
    from tools/kafka/provision.sh, confluent-kafka) skips here and fails under CI=true; a broker
    that was started and then broke is always an error.
    """
    broker = KafkaBroker()
    try:
        try:
            broker.start()
        except KafkaUnavailable as exc:
            component_missing(str(exc))
        yield broker
    finally:
        broker.close()  # also after a failed start: its log tail is already in the error


@pytest.fixture(scope="module")
def stream_triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A Triton serving the stream test pipeline's model (tests/stream_pipelines), per module."""
    from stream_harness import fraud_stream_triton

    server = fraud_stream_triton(tmp_path_factory.mktemp("triton")).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def control_plane() -> Iterator[Any]:
    """The real API server (etcd + kube-apiserver from .tools/bin) with every upstream CRD of
    the pinned releases installed, once a session: installing them costs about 40 s here."""
    from rtflow.testing.control_plane import (
        ControlPlane,
        ControlPlaneUnavailable,
        default_crd_files,
    )

    plane = ControlPlane()
    try:
        try:
            plane.start()
        except ControlPlaneUnavailable as exc:
            component_missing(str(exc))
        if not default_crd_files():
            component_missing("no CRDs under .tools/schemas: run tools/provision.sh")
        plane.install_crds()
        yield plane
    finally:
        plane.close()
