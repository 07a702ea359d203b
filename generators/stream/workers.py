"""The workers: a Deployment per fused group running the stream runtime, its ServiceAccount
and PodDisruptionBudget.

The container runs ``python -m rtflow.stages stream <module>:<pipeline> --group N``: the same
command ``rtflow run --local`` starts on one machine, loading the pipeline's own definition.
Only addresses and credentials come from the cluster: the brokers in ``KAFKA_BROKERS`` (an
environment's overlay replaces them), Triton by its Service name (same namespace), and Kafka's
TLS and SASL from Secrets mounted as files (:mod:`rtflow.generators.secret_files`), never as
environment values.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from hera.workflows import models as m

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.generators import secret_files, security
from rtflow.generators.stream.common import (
    METRICS_PORT_NAME,
    SECRETS_DIR,
    Document,
    Kafka,
    metadata,
    selector,
    service_account,
    stream,
    worker_name,
)
from rtflow.stream_layout import DRAIN_SECONDS, KAFKA_PUBLISH_FUNCTION, Group, groups

SECRETS_VOLUME = "kafka-credentials"
# The hot path's stage credentials (rtflow.Secret, e.g. a retrieval store's connection string):
# one file per Secret key, ``<ENV>_FILE`` holding its path, as the workflow plane mounts them.
STAGE_SECRETS_VOLUME = "stage-credentials"
STAGE_SECRETS_DIR = "/var/run/secrets/rtflow/stages"
CONTAINER = "worker"
TRITON_GRPC_PORT = 8001


def _dump(model: object) -> object:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")  # type: ignore[attr-defined]


def _as_dict(model: object) -> Document:
    dumped = _dump(model)
    assert isinstance(dumped, dict)
    return dict(sorted(dumped.items()))


def triton_servers(pipeline: ir.Pipeline, group: Group) -> list[str]:
    """The Triton servers the group's inference steps call."""
    found = set()
    for name in group.tasks:
        inference = pipeline.stage(pipeline.task(name).stage).inference
        if inference is not None:
            found.add(inference.server)
    return sorted(found)


def stage_secret_files(pipeline: ir.Pipeline, group: Group) -> dict[str, ir.SecretKey]:
    """``<ENV>_FILE`` -> Secret key, for every file credential of the group's stages; one
    variable naming two different keys cannot be set for one process: a one-line error."""
    found: dict[str, ir.SecretKey] = {}
    for name in group.tasks:
        stage = pipeline.stage(pipeline.task(name).stage)
        if stage.function == KAFKA_PUBLISH_FUNCTION:
            continue  # a produce of the worker's own, with the worker's Kafka credentials
        for env in stage.env:
            if env.secret is None or not env.file:
                continue
            variable = f"{env.name}_FILE"
            if found.setdefault(variable, env.secret) != env.secret:
                raise DefinitionError(
                    f"two hot-path stages give {env.name} from different Secret keys; one "
                    "worker process runs both",
                    fix="use one Secret key for it, or put a hop between them (hops=[...])",
                    field="stream",
                    pipeline=pipeline.name,
                )
    return found


def _stage_file_paths(files: Mapping[str, ir.SecretKey]) -> list[tuple[str, ir.SecretKey]]:
    return sorted({(f"{k.secret}/{k.key}", k) for k in files.values()}, key=lambda p: p[0])


def _env(pipeline: ir.Pipeline, kafka: Kafka, group: Group | None = None) -> list[m.EnvVar]:
    env = [
        m.EnvVar(name="KAFKA_BROKERS", value=kafka.bootstrap),
        m.EnvVar(name="KAFKA_SECURITY_PROTOCOL", value=kafka.protocol),
        m.EnvVar(name="HOME", value="/tmp"),
        m.EnvVar(name="PYTHONUNBUFFERED", value="1"),
        m.EnvVar(
            name="RTFLOW_WORKER_ID",
            value_from=m.EnvVarSource(field_ref=m.ObjectFieldSelector(field_path="metadata.name")),
        ),
    ]
    files = dict(kafka.secret_files())
    if kafka.sasl is not None:
        env += [
            m.EnvVar(name="KAFKA_SASL_MECHANISM", value=kafka.sasl.mechanism),
            m.EnvVar(name="KAFKA_SASL_USERNAME_FILE", value=f"{SECRETS_DIR}/sasl-username"),
            m.EnvVar(name="KAFKA_SASL_PASSWORD_FILE", value=f"{SECRETS_DIR}/sasl-password"),
        ]
    for file, variable in (
        ("ca.crt", "KAFKA_SSL_CA_LOCATION"),
        ("tls.crt", "KAFKA_SSL_CERTIFICATE_LOCATION"),
        ("tls.key", "KAFKA_SSL_KEY_LOCATION"),
    ):
        if file in files:
            env.append(m.EnvVar(name=variable, value=f"{SECRETS_DIR}/{file}"))
    if group is not None:
        for variable, key in stage_secret_files(pipeline, group).items():
            path = f"{STAGE_SECRETS_DIR}/{key.secret}/{key.key}"
            env.append(m.EnvVar(name=variable, value=path))
    return sorted(env, key=lambda e: e.name)


def command(pipeline: ir.Pipeline, group: Group) -> list[str]:
    """The worker's command and arguments: what a test runs against the real broker."""
    plane = stream(pipeline)
    args = ["python", "-m", "rtflow.stages", "stream", plane.target, "--group", str(group.index)]
    for server in triton_servers(pipeline, group):
        args += ["--triton", f"{server}={server}:{TRITON_GRPC_PORT}"]
    args += ["--metrics-port", str(plane.metrics_port)]
    return args


def _probe(*, period: int, failures: int, http: bool = True) -> Document:
    # A dict: hera's typed HTTPGetAction takes only a port number, and the port's name keeps
    # the probe right when metrics_port changes.
    action = "httpGet" if http else "tcpSocket"
    target: Document = (
        {"path": "/metrics", "port": METRICS_PORT_NAME} if http else {"port": METRICS_PORT_NAME}
    )
    return {
        action: target,
        "periodSeconds": period,
        "timeoutSeconds": 3,
        "failureThreshold": failures,
    }


def probes() -> Document:
    """Started when its metrics endpoint answers (imports and both producers' transactions
    initialised come first); a process whose loop is stuck exits by itself (the commit
    deadline), so liveness only catches a hung interpreter: its metrics server no longer
    accepts connections (a TCP check, not the readiness request: a slow scrape under load must
    take the pod out of the Service's endpoints, not restart it)."""
    return {
        "startupProbe": _probe(period=2, failures=60),
        "readinessProbe": _probe(period=10, failures=3),
        "livenessProbe": _probe(period=10, failures=6, http=False),
    }


def container(
    pipeline: ir.Pipeline, group: Group, kafka: Kafka, resources: ir.Resources | None = None
) -> m.Container:
    plane = stream(pipeline)
    if plane.image is None:
        images = sorted({s for s in (pipeline.stage(pipeline.task(t).stage).image
                                     for t in group.tasks) if s})  # fmt: skip
        found = f"they have several ({', '.join(images)})" if images else "they name none"
        raise DefinitionError(
            f"the hot path's stages run in one worker process and need one image; {found}",
            fix="build one image with the hot path's stage functions and rtflow[stream] "
            "(rtflow stage-dockerfile) and pass rtflow.Stream(image=...)",
            field="stream.image",
            pipeline=pipeline.name,
        )
    res = resources or plane.resources or ir.Resources("1", "1Gi", "1", "1Gi")
    full = command(pipeline, group)
    mounts = [security.scratch_mount()]
    if kafka.secret_files():
        mounts.append(secret_files.mount(SECRETS_VOLUME, SECRETS_DIR))
    if stage_secret_files(pipeline, group):
        mounts.append(secret_files.mount(STAGE_SECRETS_VOLUME, STAGE_SECRETS_DIR))
    return m.Container(
        name=CONTAINER,
        image=plane.image,
        image_pull_policy=security.PULL_POLICY,
        command=full[:3],
        args=full[3:],
        env=_env(pipeline, kafka, group),
        ports=[
            m.ContainerPort(
                name=METRICS_PORT_NAME, container_port=plane.metrics_port, protocol="TCP"
            )
        ],
        resources=security.resource_requirements(res, "stream-worker"),
        security_context=security.container_security_context(),
        volume_mounts=mounts,
    )


def termination_grace_seconds(plane: ir.StreamPlane) -> int:
    """SIGTERM finishes the batch in flight and commits it: the longest batch wait, a batch,
    and a commit bounded by the worker's deadline, with margin."""
    return math.ceil(plane.max_wait_ms / 1000 + DRAIN_SECONDS) + 10


def deployment(
    pipeline: ir.Pipeline, group: Group, kafka: Kafka, resources: ir.Resources | None = None
) -> Document:
    plane = stream(pipeline)
    name = worker_name(pipeline, group)
    volumes = [security.scratch_volume()]
    secrets = secret_files.volume(SECRETS_VOLUME, kafka.secret_files())
    if secrets is not None:
        volumes.append(secrets)
    stage_files = _stage_file_paths(stage_secret_files(pipeline, group))
    stage_secrets = secret_files.volume(STAGE_SECRETS_VOLUME, stage_files)
    if stage_secrets is not None:
        volumes.append(stage_secrets)
    pod_labels = {**metadata(pipeline, name)["labels"], **selector(pipeline, group)}
    pod_spec: Document = {
        "affinity": security.spread_across_nodes(selector(pipeline, group)),
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "serviceAccountName": service_account(pipeline),
        "securityContext": _dump(security.pod_security_context()),
        "terminationGracePeriodSeconds": termination_grace_seconds(plane),
        "containers": [{**_as_dict(container(pipeline, group, kafka, resources)), **probes()}],
        "volumes": [_dump(v) for v in volumes],
    }
    meta = metadata(pipeline, name)
    meta["labels"] = dict(sorted({**meta["labels"], **selector(pipeline, group)}.items()))
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            # The floor; KEDA's ScaledObject owns the count above it.
            "replicas": plane.workers,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector(pipeline, group)},
            # One new worker before an old one stops: a partition is never without an owner
            # for longer than a rebalance.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": dict(sorted(pod_labels.items()))},
                "spec": pod_spec,
            },
        },
    }


def pod_disruption_budget(pipeline: ir.Pipeline, group: Group) -> Document:
    """A drain takes one worker at a time: each leaves the group after committing."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": metadata(pipeline, worker_name(pipeline, group)),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(pipeline, group)}},
    }


def service_account_document(pipeline: ir.Pipeline) -> Document:
    """The workers call no Kubernetes API: an identity with no token mounted and no Role."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": metadata(pipeline, service_account(pipeline)),
        "automountServiceAccountToken": False,
    }


def documents(
    pipeline: ir.Pipeline, kafka: Kafka, resources: Mapping[str, ir.Resources]
) -> list[Document]:
    found = [service_account_document(pipeline)]
    for group in groups(pipeline):
        chosen = resources.get(worker_name(pipeline, group))
        found += [
            deployment(pipeline, group, kafka, chosen),
            pod_disruption_budget(pipeline, group),
        ]
    return found
