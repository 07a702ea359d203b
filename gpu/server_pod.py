"""The pod that runs a Triton server, and the core objects around it: the Deployment, the
Service and the PodDisruptionBudget.

Plain dicts whose pod pieces are hera's typed core/v1 models (``hera.workflows.models``) dumped
in camelCase, meant to pass Kubernetes' strict schemas (1.29 and later) unchanged.

The pod is locked down like every rtflow pod (``rtflow.generators.security``): non-root, read-only
root filesystem, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault. Triton
writes only to ``/tmp`` (cloud repositories are downloaded there; an emptyDir) and ``/dev/shm``
(the Python backend's shared memory; a memory-backed emptyDir). Where each model repository is
mounted or downloaded from, and the cloud credentials that reach it (references to Secrets,
never values), are decided here.

Models load with ``--model-control-mode=explicit`` and one ``--load-model`` per declared model,
so a repository shared with other servers never loads models this server does not declare; the
API that could load or unload others is closed (:mod:`rtflow.gpu.admin_api`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from hera.workflows import models as m

from rtflow.errors import DefinitionError
from rtflow.generators import secret_files, security
from rtflow.gpu import admin_api
from rtflow.gpu.pools import placement
from rtflow.gpu.repository import Repository
from rtflow.gpu.response_cache import cache_args
from rtflow.gpu.server import (
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    TritonServing,
    _metadata,
    _problem,
    selector_labels,
    serving_labels,
)
from rtflow.quantity import parse_quantity
from rtflow.stages import contract
from rtflow.triggers import SecretKey

__all__ = ["container", "deployment", "pod_disruption_budget", "service", "triton_args"]

CONTAINER: Final = "tritonserver"
MODELS_MOUNT: Final = "/models"
SECRETS_MOUNT: Final = "/var/run/secrets/rtflow"
SHM_VOLUME: Final = "dshm"


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _volume_name(prefix: str, key: str) -> str:
    """A volume name that is a DNS-1123 label whatever the claim or secret name's length."""
    base = re.sub(r"[^a-z0-9-]+", "-", f"{prefix}-{key}").strip("-")
    if len(base) <= 63:
        return base
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    return f"{base[:54].rstrip('-')}-{digest}"


@dataclass(frozen=True)
class _Storage:
    repositories: tuple[str, ...]
    volumes: tuple[m.Volume, ...]
    mounts: tuple[m.VolumeMount, ...]
    env: tuple[m.EnvVar, ...]


def _storage(serving: TritonServing) -> _Storage:
    repositories: set[str] = set()
    claims: dict[str, str] = {}
    env: dict[str, m.EnvVar] = {}
    volumes: list[m.Volume] = []
    mounts: list[m.VolumeMount] = []
    for model in serving.models:
        repo = model.repository
        if repo.kind == "local":
            raise DefinitionError(
                _problem(
                    serving.name,
                    f"model {model.name!r} lives in the local folder {repo.uri!r}, which a "
                    "cluster cannot read",
                ),
                fix="put the model repository in s3://, gs:// or a PVC (pvc://claim/path); "
                "local folders are for rtflow run --local",
                field=f"models[{model.name}].repository",
            )
        if repo.kind == "pvc":
            mount = f"{MODELS_MOUNT}/{repo.location}"
            claims[repo.location] = mount
            repositories.add(f"{mount}/{repo.path}" if repo.path else mount)
        else:
            repositories.add(repo.uri)
            _credentials(repo, env, volumes, mounts)
    for claim, mount in sorted(claims.items()):
        volume = _volume_name("repository", claim)
        volumes.append(
            m.Volume(
                name=volume,
                persistent_volume_claim=m.PersistentVolumeClaimVolumeSource(
                    claim_name=claim, read_only=True
                ),
            )
        )
        mounts.append(m.VolumeMount(name=volume, mount_path=mount, read_only=True))
    return _Storage(
        repositories=tuple(sorted(repositories)),
        volumes=tuple(sorted(volumes, key=lambda v: v.name)),
        mounts=tuple(sorted(mounts, key=lambda v: v.mount_path)),
        env=tuple(env[key] for key in sorted(env)),
    )


def _credentials(
    repo: Repository,
    env: dict[str, m.EnvVar],
    volumes: list[m.Volume],
    mounts: list[m.VolumeMount],
) -> None:
    """Cloud credentials: only ever references to a Secret, never values."""
    if repo.kind == "s3":
        if repo.region is not None:
            env["AWS_DEFAULT_REGION"] = m.EnvVar(name="AWS_DEFAULT_REGION", value=repo.region)
        if repo.secret is None:
            return  # IRSA / instance profile
        keys = dict(repo.secret_keys)
        if set(keys) == {"file"}:
            path = _mounted(repo.secret, keys["file"], "s3", volumes, mounts)
            current = env.get("TRITON_CLOUD_CREDENTIAL_PATH")
            if current is not None and current.value != path:
                raise DefinitionError(
                    f"s3 repositories of one server name two credential Secrets ({path}, "
                    f"{current.value}); Triton reads one credential file",
                    fix="put every bucket's entry in one credential file, in one Secret",
                    field="models.repository.secret",
                )
            env["TRITON_CLOUD_CREDENTIAL_PATH"] = m.EnvVar(
                name="TRITON_CLOUD_CREDENTIAL_PATH", value=path
            )
            return
        for env_name, key in repo.secret_keys:
            env[env_name] = m.EnvVar(
                name=env_name,
                value_from=m.EnvVarSource(
                    secret_key_ref=m.SecretKeySelector(name=repo.secret, key=key)
                ),
            )
        return
    if repo.secret is None:
        return  # Workload Identity
    path = _mounted(repo.secret, dict(repo.secret_keys)["key"], "gcs", volumes, mounts)
    env["GOOGLE_APPLICATION_CREDENTIALS"] = m.EnvVar(
        name="GOOGLE_APPLICATION_CREDENTIALS", value=path
    )


def _mounted(
    secret: str, key: str, kind: str, volumes: list[m.Volume], mounts: list[m.VolumeMount]
) -> str:
    """Mount one key of a Secret as a file (rtflow.generators.secret_files) and return its path."""
    name = _volume_name(kind, secret)
    folder = f"{SECRETS_MOUNT}/{name}"
    if all(v.name != name for v in volumes):
        volume = secret_files.volume(name, [(key, SecretKey(secret, key))])
        assert volume is not None
        volumes.append(volume)
        mounts.append(secret_files.mount(name, folder))
    return f"{folder}/{key}"


def triton_args(serving: TritonServing, repositories: Sequence[str]) -> list[str]:
    """The ``tritonserver`` command line of the pod."""
    args = [f"--model-repository={repo}" for repo in repositories]
    args += [
        "--model-control-mode=explicit",
        *(f"--load-model={model.name}" for model in serving.models),
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        f"--exit-timeout-secs={serving.exit_timeout_seconds}",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-metrics=true",
        f"--allow-gpu-metrics={'true' if serving.pool is not None else 'false'}",
        *cache_args(serving.models),
    ]
    return args


def _probe(path: str, *, period: int, failures: int) -> m.Probe:
    return m.Probe(
        http_get=m.HTTPGetAction(path=path, port=HTTP_PORT),
        period_seconds=period,
        timeout_seconds=5,
        failure_threshold=failures,
    )


def container(serving: TritonServing) -> m.Container:
    """The ``tritonserver`` container (typed), with its probes, ports, limits and mounts."""
    storage = _storage(serving)
    res = serving.resources
    gpus = placement(serving.pool).gpu_limits() if serving.pool is not None else {}
    env = [m.EnvVar(name="HOME", value=contract.SCRATCH_DIR), *storage.env]
    return m.Container(
        name=CONTAINER,
        image=serving.image,
        image_pull_policy=security.PULL_POLICY,
        command=admin_api.launch(serving.admin_key),
        args=triton_args(serving, storage.repositories),
        ports=[
            m.ContainerPort(name="http", container_port=HTTP_PORT, protocol="TCP"),
            m.ContainerPort(name="grpc", container_port=GRPC_PORT, protocol="TCP"),
            m.ContainerPort(name="metrics", container_port=METRICS_PORT, protocol="TCP"),
        ],
        env=sorted(env, key=lambda e: e.name),
        resources=security.resource_requirements(
            res, "triton", extra=gpus, storage_limit=_storage_limit(serving)
        ),
        startup_probe=_probe(
            "/v2/health/ready", period=10, failures=max(serving.startup_timeout_seconds // 10, 3)
        ),
        readiness_probe=_probe("/v2/health/ready", period=5, failures=3),
        liveness_probe=_probe("/v2/health/live", period=10, failures=3),
        security_context=security.container_security_context(),
        volume_mounts=[
            security.scratch_mount(),
            m.VolumeMount(name=SHM_VOLUME, mount_path="/dev/shm"),
            *storage.mounts,
            *admin_api.mounts(serving.admin_key),
        ],
    )


def _storage_limit(serving: TritonServing) -> str:
    """Room for the declared scratch volume (model downloads) and 2Gi of logs, or the default."""
    if serving.scratch_size is None:
        return ""
    needed = parse_quantity(serving.scratch_size) + 2 * 2**30
    default = parse_quantity(security.EPHEMERAL_STORAGE["triton"][1])
    return f"{int(needed) // 2**20}Mi" if needed > default else ""


def _volumes(serving: TritonServing) -> list[m.Volume]:
    storage = _storage(serving)
    scratch = security.scratch_volume()
    if serving.scratch_size is not None:
        scratch = m.Volume(
            name=scratch.name,
            empty_dir=m.EmptyDirVolumeSource(size_limit=m.Quantity(serving.scratch_size)),
        )
    shm = m.Volume(
        name=SHM_VOLUME,
        empty_dir=m.EmptyDirVolumeSource(medium="Memory", size_limit=m.Quantity(serving.shm_size)),
    )
    return [scratch, shm, *storage.volumes, *admin_api.volumes(serving.admin_key)]


CANARY_ANNOTATION = "rtflow.dev/canary-controller"
"""On a Triton pod serving a model under canary: the label (``key=value``) of the canary
controller's pods (rtflow.canary_rollout), which its NetworkPolicy lets reach the HTTP
(repository API) and metrics ports."""
CANARY_LABEL = "rtflow.dev/canary-server"


def _pod_annotations(serving: TritonServing) -> dict[str, str]:
    found = {}
    if any(m.canary is not None for m in serving.models):
        found[CANARY_ANNOTATION] = f"{CANARY_LABEL}={serving.name}"
    if not serving.prometheus:
        return found
    return {
        **found,
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": str(METRICS_PORT),
        "prometheus.io/scrape": "true",
    }


def deployment(serving: TritonServing) -> dict[str, Any]:
    """The Triton Deployment (apps/v1)."""
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _dump(security.pod_security_context()),
        "terminationGracePeriodSeconds": serving.exit_timeout_seconds + 15,
    }
    if serving.service_account:
        pod_spec["serviceAccountName"] = serving.service_account
    if serving.pool is not None:
        pod_spec.update(placement(serving.pool).pod_spec_fields())
    pod_spec["affinity"] = {
        **pod_spec.get("affinity", {}),
        **security.spread_across_nodes(selector_labels(serving.name)),
    }
    pod_spec["containers"] = [_dump(container(serving))]
    pod_spec["volumes"] = [_dump(volume) for volume in _volumes(serving)]
    template_meta: dict[str, Any] = {"labels": serving_labels(serving)}
    annotations = _pod_annotations(serving)
    if annotations:
        template_meta["annotations"] = annotations
    spec: dict[str, Any] = {}
    if serving.autoscaling is None:
        spec["replicas"] = serving.replicas
    spec.update(
        {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(serving.name)},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
            },
            "template": {"metadata": template_meta, "spec": pod_spec},
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(serving),
        "spec": spec,
    }


def service(serving: TritonServing) -> dict[str, Any]:
    """The ClusterIP Service: 8000 http (KServe v2 REST), 8001 grpc, 8002 metrics."""
    ports = [
        m.ServicePort(
            name="http", port=HTTP_PORT, target_port=m.IntOrString("http"), protocol="TCP"
        ),
        m.ServicePort(
            name="grpc", port=GRPC_PORT, target_port=m.IntOrString("grpc"), protocol="TCP"
        ),
        m.ServicePort(
            name="metrics", port=METRICS_PORT, target_port=m.IntOrString("metrics"), protocol="TCP"
        ),
    ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(serving),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(serving.name),
            "ports": [_dump(port) for port in ports],
        },
    }


def pod_disruption_budget(serving: TritonServing) -> dict[str, Any]:
    """policy/v1: at most ``max_unavailable`` pods evicted at once (a drain never blocks)."""
    spec = m.PodDisruptionBudgetSpec(
        max_unavailable=m.IntOrString(serving.max_unavailable),
        selector=m.LabelSelector(match_labels=selector_labels(serving.name)),
    )
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(serving),
        "spec": _dump(spec),
    }
