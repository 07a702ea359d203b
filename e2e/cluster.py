"""What the e2e kind cluster holds besides the compiled pipeline, as objects and image builds.

Everything the fraud example's ``kind`` environment expects from its cluster is here, pinned:
Argo Workflows and Argo Events (upstream install manifests), a Kafka speaking SASL_SSL with
SCRAM-SHA-512 and its own CA (as production does), the Secrets the pipeline references, the
model volume Triton reads, and the images the overlay names (built from this checkout, or thin
stand-ins for the example's two container stages, whose real images are the user's).

Objects are dicts (checked by ``tests/test_e2e_objects.py`` with kubernetes-validate, strict),
so a typo fails on a laptop without Docker, not after a 10-minute cluster start.
"""

from __future__ import annotations

import base64
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rtflow.testing.kafka_security import (
    BrokerSecurity,
    Scram,
    properties_text,
    sasl_ssl_listener_settings,
    tls_material,
)

ROOT = Path(__file__).resolve().parents[1]

KIND_VERSION = "v0.27.0"
KUBECTL_VERSION = "v1.32.2"
NODE_IMAGE = "kindest/node:v1.32.2"
ARGO_WORKFLOWS = "v4.1.4"
ARGO_EVENTS = "v1.9.11"
ARGO_WORKFLOWS_INSTALL = (
    f"https://github.com/argoproj/argo-workflows/releases/download/{ARGO_WORKFLOWS}/install.yaml"
)
ARGO_EVENTS_INSTALL = (
    f"https://raw.githubusercontent.com/argoproj/argo-events/{ARGO_EVENTS}/manifests/install.yaml"
)
NATS_VERSION = "2.10.29"  # one of Argo Events 1.9.11's JetStream versions (its controller config)
KAFKA_IMAGE = "apache/kafka:4.0.0"
LOADER_IMAGE = "busybox:1.36.1"

PIPELINE_NAMESPACE = "fraud"  # the kind environment's namespace
KAFKA_NAMESPACE = "kafka"
KAFKA_HOST = f"kafka.{KAFKA_NAMESPACE}.svc.cluster.local"
KAFKA_SECURE_PORT = 9093
KAFKA_ADMIN_PORT = 19092  # PLAINTEXT on the pod's loopback only: topics and test producers
KAFKA_USER = "fraud-detection"
# The e2e Kafka is not Strimzi: its topics are made by hand (the KafkaTopic objects the example
# compiles to are applied, and stay inert, since the CRD is installed but no operator).
TOPICS = ("transactions", "transactions-dead-letter", "fraud-decisions", "fraud-detection-handoff")
STREAM_CRD_SOURCES = ("keda", "strimzi", "prometheus-operator")
MODEL_CLAIM = "triton-models"  # the example's repository "pvc://triton-models/fraud"
MODEL_PATH = "fraud"


def _metadata(name: str, namespace: str, **labels: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/part-of": "rtflow-e2e", **labels},
    }


def _restricted(uid: int) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": uid,
        "fsGroup": uid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    return pod, container


def secret(name: str, namespace: str, data: Mapping[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(name, namespace),
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def kafka_properties(security: BrokerSecurity) -> str:
    """The broker's server.properties: one KRaft node; SASL_SSL (SCRAM-SHA-512, PEM key store)
    for clients, PLAINTEXT on loopback for the test's own admin commands. The SASL_SSL settings
    are those of ``rtflow.testing``'s test broker, which the integration tests prove against the
    real broker (tests/integration/test_kafka_sasl_ssl.py)."""
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": "1@127.0.0.1:9094",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://127.0.0.1:{KAFKA_ADMIN_PORT},"
        f"SASL_SSL://0.0.0.0:{KAFKA_SECURE_PORT},CONTROLLER://127.0.0.1:9094",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{KAFKA_ADMIN_PORT},"
        f"SASL_SSL://{KAFKA_HOST}:{KAFKA_SECURE_PORT}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
        "SASL_SSL:SASL_SSL",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": "/var/lib/kafka/data",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        **sasl_ssl_listener_settings(security),
    }
    return properties_text(settings)


def kafka_security(password: str) -> BrokerSecurity:
    """TLS material for the broker's in-cluster name, and the pipeline's SCRAM user."""
    return BrokerSecurity(tls=tls_material([KAFKA_HOST]), users=(Scram(KAFKA_USER, password),))


def kafka_objects(security: BrokerSecurity, cluster_id: str) -> list[dict[str, Any]]:
    """Namespace, config Secret, Deployment and Service of the e2e Kafka."""
    labels = {"app.kubernetes.io/name": "kafka"}
    config = secret(
        "kafka-config", KAFKA_NAMESPACE, {"server.properties": kafka_properties(security)}
    )
    (user,) = security.users
    users = secret("kafka-users", KAFKA_NAMESPACE, {user.user: user.password})
    # Format once (SCRAM user in the bootstrap metadata), then become the broker.
    scram = f"SCRAM-SHA-512=[name={KAFKA_USER},password=$(cat /etc/kafka-users/{KAFKA_USER})]"
    start = (
        "set -eu; props=/etc/kafka-e2e/server.properties; "
        "if [ ! -f /var/lib/kafka/data/meta.properties ]; then "
        f"/opt/kafka/bin/kafka-storage.sh format --cluster-id {shlex.quote(cluster_id)} "
        f'--config "$props" --add-scram "{scram}"; fi; '
        'exec /opt/kafka/bin/kafka-server-start.sh "$props"'
    )
    pod_security, container_security = _restricted(1000)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata("kafka", KAFKA_NAMESPACE, **labels),
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "securityContext": pod_security,
                    "containers": [
                        {
                            "name": "kafka",
                            "image": KAFKA_IMAGE,
                            "command": ["/bin/sh", "-c", start],
                            "env": [
                                {"name": "LOG_DIR", "value": "/tmp/kafka-logs"},
                                {"name": "KAFKA_HEAP_OPTS", "value": "-Xmx512m -Xms512m"},
                            ],
                            "ports": [
                                {"name": "sasl-ssl", "containerPort": KAFKA_SECURE_PORT},
                            ],
                            "readinessProbe": {
                                "tcpSocket": {"port": KAFKA_SECURE_PORT},
                                "periodSeconds": 5,
                            },
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "768Mi"},
                                # The broker's 512 MiB heap plus the test's CLI tools.
                                "limits": {"cpu": "1", "memory": "1536Mi"},
                            },
                            "securityContext": container_security,
                            "volumeMounts": [
                                {"name": "config", "mountPath": "/etc/kafka-e2e", "readOnly": True},
                                {
                                    "name": "users",
                                    "mountPath": "/etc/kafka-users",
                                    "readOnly": True,
                                },
                                {"name": "data", "mountPath": "/var/lib/kafka/data"},
                                {"name": "tmp", "mountPath": "/tmp"},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "config", "secret": {"secretName": "kafka-config"}},
                        {"name": "users", "secret": {"secretName": "kafka-users"}},
                        {"name": "data", "emptyDir": {}},
                        {"name": "tmp", "emptyDir": {}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata("kafka", KAFKA_NAMESPACE, **labels),
        "spec": {
            "selector": labels,
            "ports": [{"name": "sasl-ssl", "port": KAFKA_SECURE_PORT, "targetPort": "sasl-ssl"}],
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KAFKA_NAMESPACE}}
    return [namespace, config, users, deployment, service]


def pipeline_secrets(security: BrokerSecurity) -> list[dict[str, Any]]:
    """The Secrets the fraud example references, with e2e values."""
    ns = PIPELINE_NAMESPACE
    (user,) = security.users
    return [
        secret("kafka-credentials", ns, {"username": user.user, "password": user.password}),
        secret("kafka-ca", ns, {"ca.crt": security.tls.ca_pem}),
        secret("card-api", ns, {"token": "e2e-not-a-real-token"}),
        secret("on-call-slack", ns, {"url": "http://127.0.0.1:9/e2e-not-a-webhook"}),
    ]


def event_bus() -> dict[str, Any]:
    """The ``default`` JetStream bus the example's EventSource and Sensor use (it declares no
    bus of its own: production has one per namespace)."""
    # As rtflow's own EventBus (support-triage): an explicit non-root user, since the NATS
    # image itself would run as root and runAsNonRoot alone would refuse to start it.
    pod_security, _ = _restricted(65532)
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "EventBus",
        "metadata": _metadata("default", PIPELINE_NAMESPACE),
        "spec": {
            "jetstream": {
                "version": NATS_VERSION,
                "replicas": 3,
                "persistence": {"accessMode": "ReadWriteOnce", "volumeSize": "1Gi"},
                "securityContext": pod_security,
            }
        },
    }


def model_volume() -> list[dict[str, Any]]:
    """The claim Triton mounts, and a pod that holds it open for ``kubectl cp``."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _metadata(MODEL_CLAIM, PIPELINE_NAMESPACE),
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    }
    pod_security, container_security = _restricted(65532)
    loader = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata("model-loader", PIPELINE_NAMESPACE),
        "spec": {
            "securityContext": pod_security,
            "containers": [
                {
                    "name": "loader",
                    "image": LOADER_IMAGE,
                    "command": ["/bin/sh", "-c", "sleep 3600"],
                    "resources": {
                        "requests": {"cpu": "10m", "memory": "16Mi"},
                        "limits": {"cpu": "100m", "memory": "64Mi"},
                    },
                    "securityContext": container_security,
                    "volumeMounts": [{"name": "models", "mountPath": "/models"}],
                }
            ],
            "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": MODEL_CLAIM}}],
        },
    }
    return [claim, loader]


@dataclass(frozen=True)
class Image:
    """One image to build into the cluster: its tag, its Dockerfile and its build context."""

    tag: str
    dockerfile: str
    context: Path


def images(wheel: Path, work: Path) -> list[Image]:
    """Every image the ``kind`` overlay names that no registry serves: rtflow's base and
    built-in images and the example's stage images (from this checkout's wheel), the CPU
    Triton, and stand-ins for the two container stages (the example's own images are a user's,
    not ours: the stand-ins print their arguments and succeed)."""
    import fraud_detection as fraud  # examples/ on sys.path (e2e/conftest.py)

    from rtflow.stages.dockerfiles import (
        DEFAULT_BASE_IMAGE,
        DEFAULT_STREAM_BASE_IMAGE,
        STREAM_WORKER,
        render_base_dockerfile,
        render_stage_dockerfile,
    )

    wheels = work / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / wheel.name).write_bytes(wheel.read_bytes())
    requirement = f"/tmp/wheels/{wheel.name}"
    built = [
        Image(
            DEFAULT_BASE_IMAGE,
            render_base_dockerfile(rtflow_requirement=requirement, find_links="wheels"),
            work,
        ),
        Image(
            "ghcr.io/rtflow/kafka-publish:0.1.0",
            render_base_dockerfile(
                rtflow_requirement=requirement, find_links="wheels", builtin="kafka-publish"
            ),
            work,
        ),
        Image(
            DEFAULT_STREAM_BASE_IMAGE,
            render_base_dockerfile(
                rtflow_requirement=requirement, find_links="wheels", builtin=STREAM_WORKER
            ),
            work,
        ),
        Image(
            fraud.TRITON_CPU_IMAGE,
            (ROOT / "e2e/images/tritonserver-cpu.Dockerfile").read_text(),
            work,
        ),
    ]
    stage = render_stage_dockerfile(["fraud_detection.py", "models"])
    for name in ("features:1.4.0", "decider:2.1.0", "reviewer:1.0.3"):
        built.append(Image(f"{fraud.REGISTRY}/{name}", stage, ROOT / "examples"))
    # The stream workers: the same code on the stream-worker base.
    worker = render_stage_dockerfile(
        ["fraud_detection.py", "models"], base_image=DEFAULT_STREAM_BASE_IMAGE
    )
    built.append(Image(f"{fraud.REGISTRY}/fraud-stream:1.0.0", worker, ROOT / "examples"))
    stand_in = (ROOT / "e2e/images/stand-in.Dockerfile").read_text()
    for name in ("card-actions:3.0.0", "notifier:1.0.0"):
        built.append(Image(f"{fraud.REGISTRY}/{name}", stand_in, work))
    return built


def stream_plane_crds() -> list[dict[str, Any]]:
    """The CRDs of the kinds the stream plane compiles to (KEDA, Strimzi's KafkaTopic,
    prometheus-operator's monitors and rules), from the same pinned sources the strict schemas
    come from (tools/crd_schemas.py), so that ``kubectl apply -k`` accepts every object. Only
    the definitions: KEDA's and the operators' controllers are not part of this cluster."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("crd_schemas", ROOT / "tools/crd_schemas.py")
    assert spec is not None and spec.loader is not None
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool  # its dataclasses look their module up there
    spec.loader.exec_module(tool)
    crds: list[dict[str, Any]] = []
    for source in tool.SOURCES:
        if source.name not in STREAM_CRD_SOURCES:
            continue
        read = tool.go_module_crds if source.toolchain == "go" else tool.maven_generated_crds
        for _kind, text, _where in read(source):
            crds += [d for d in yaml.safe_load_all(text) if d]
    return crds


def referenced_images(documents: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every container image the objects name (to check that e2e builds all of them)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, Mapping):
            image = node.get("image")
            if isinstance(image, str):
                found.add(image)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for document in documents:
        walk(document)
    return found
