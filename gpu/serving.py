"""A Triton server on a GPU pool: declaration, and the Kubernetes objects that run it.

:func:`triton_serving` checks a server declaration (and how its models fit the pool) once;
:func:`serving_manifests` turns it into a Deployment, a Service, a PodDisruptionBudget and an
autoscaler, as plain dicts whose pod pieces are hera's typed core/v1 models
(``hera.workflows.models``) dumped in camelCase. The objects are meant to pass Kubernetes'
strict schemas (1.29 and later) unchanged.

The pod is locked down like every rtflow pod (``rtflow.generators.security``): non-root, read-only
root filesystem, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault. Triton
writes only to ``/tmp`` (cloud repositories are downloaded there; an emptyDir) and ``/dev/shm``
(the Python backend's shared memory; a memory-backed emptyDir).

Models load with ``--model-control-mode=explicit`` and one ``--load-model`` per declared model,
so a repository shared with other servers never loads models this server does not declare; the
API that could load or unload others is closed (:mod:`rtflow.gpu.admin_api`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, get_args

from hera.workflows import models as m

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.generators import labels as label_keys
from rtflow.generators import secret_files, security
from rtflow.gpu import admin_api
from rtflow.gpu.models import TritonModel
from rtflow.gpu.pools import GpuPool, placement
from rtflow.gpu.repository import Repository
from rtflow.names import check_dns1123_label, check_dns1123_subdomain, check_label
from rtflow.quantity import check_quantity, parse_go_duration, parse_quantity
from rtflow.stages import contract
from rtflow.triggers import SecretKey

__all__ = [
    "COMPONENT",
    "DEFAULT_IMAGE",
    "GRPC_PORT",
    "HPA_METRICS",
    "HTTP_PORT",
    "METRICS_PORT",
    "TRITON_METRICS",
    "Autoscaling",
    "TritonServing",
    "container",
    "deployment",
    "grpc_address",
    "horizontal_pod_autoscaler",
    "infer_url",
    "keda_query",
    "keda_scaled_object",
    "model_gpu_pool",
    "pod_disruption_budget",
    "prometheus_adapter_rules",
    "selector_labels",
    "service",
    "service_url",
    "serving_for_model",
    "serving_labels",
    "serving_manifests",
    "triton_args",
    "triton_image",
    "triton_serving",
]

HTTP_PORT: Final = 8000
GRPC_PORT: Final = 8001
METRICS_PORT: Final = 8002
COMPONENT: Final = "inference-server"
CONTAINER: Final = "tritonserver"
IMAGE_REPOSITORY: Final = "nvcr.io/nvidia/tritonserver"
DEFAULT_TAG: Final = "24.10"
"""Triton 2.51.0: the release whose CPU build nvidia-pytriton 0.7 ships, which the tests run."""
MODELS_MOUNT: Final = "/models"
SECRETS_MOUNT: Final = "/var/run/secrets/rtflow"
SHM_VOLUME: Final = "dshm"
MAX_REPLICAS: Final = 100

# Triton's Prometheus metrics the autoscalers read (per model and version).
TRITON_METRICS: Final = {
    "queue_duration": "nv_inference_queue_duration_us",
    "request_success": "nv_inference_request_success",
    "pending": "nv_inference_pending_request_count",
}
AutoscalingMetric = Literal["queue_time", "pending_requests"]
AutoscalingEngine = Literal["hpa", "keda"]
HPA_METRICS: Final[dict[str, str]] = {
    "queue_time": "triton_queue_time_per_request_us",
    "pending_requests": "triton_pending_requests",
}
"""The per-pod custom metrics an HPA reads; :func:`prometheus_adapter_rules` defines them."""


def triton_image(tag: str = DEFAULT_TAG) -> str:
    """``nvcr.io/nvidia/tritonserver:<yy.mm>-py3`` (the image with the Python backend)."""
    if not re.match(r"^[0-9]{2}\.[0-9]{2}$", tag):
        raise DefinitionError(
            f"Triton image tag {tag!r} is not a release such as '24.10'",
            fix="give the NGC release as yy.mm, or pass the whole image to image=",
            field="image",
        )
    return f"{IMAGE_REPOSITORY}:{tag}-py3"


DEFAULT_IMAGE: Final = triton_image()


@dataclass(frozen=True)
class Autoscaling:
    """Scale the server on a Triton metric.

    ``metric="queue_time"``: ``target`` is the average queue time per request in microseconds
    (over ``window``); ``metric="pending_requests"``: ``target`` is pending requests per pod.
    ``model`` restricts the metric to one served model (default: all of them). ``engine`` picks an
    autoscaling/v2 HPA on a custom metric (needs prometheus-adapter with
    :func:`prometheus_adapter_rules`) or a KEDA ScaledObject with a Prometheus trigger at
    ``prometheus_url``.
    """

    metric: AutoscalingMetric
    target: int
    min_replicas: int = 1
    max_replicas: int = 4
    model: str | None = None
    engine: AutoscalingEngine = "hpa"
    window: str = "1m"
    prometheus_url: str = "http://prometheus-operated.monitoring.svc:9090"
    scale_down_stabilization_seconds: int = 300


@dataclass(frozen=True)
class TritonServing:
    """A validated Triton server declaration (build it with :func:`triton_serving`)."""

    name: str
    models: tuple[TritonModel, ...]
    resources: ir.Resources
    pool: GpuPool | None = None
    replicas: int = 1
    image: str = DEFAULT_IMAGE
    autoscaling: Autoscaling | None = None
    prometheus: bool = True
    shm_size: str = "1Gi"
    scratch_size: str | None = None
    namespace: str | None = None
    part_of: str | None = None
    admin_key: Any = None  # rtflow.SecretKey: opens Triton's admin API to its holder
    labels: tuple[tuple[str, str], ...] = ()
    service_account: str | None = None
    exit_timeout_seconds: int = 30
    startup_timeout_seconds: int = 600
    max_unavailable: int = 1

    def model(self, name: str) -> TritonModel:
        return next(model for model in self.models if model.name == name)


def _problem(server: str, text: str) -> str:
    return f"Triton server {server!r}: {text}"


def _whole(value: object, *, server: str, field: str, lowest: int, highest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise DefinitionError(
            _problem(server, f"{field} {value!r} is out of range"),
            fix=f"use a whole number from {lowest} to {highest}",
            field=field,
        )
    return value


_IMAGE: Final = re.compile(
    r"^[a-z0-9][a-z0-9._\-/:]*[a-z0-9](:[\w][\w.\-]{0,127}|@sha256:[0-9a-f]{64})$"
)


def _check_image(server: str, image: object) -> str:
    if not isinstance(image, str) or not _IMAGE.match(image):
        raise DefinitionError(
            _problem(server, f"image {image!r} is not an image reference with a tag or digest"),
            fix=f"use e.g. {DEFAULT_IMAGE!r} (rtflow.gpu.serving.triton_image('24.10'))",
            field="image",
        )
    return image


def _check_autoscaling(server: str, spec: object, models: Sequence[TritonModel]) -> Autoscaling:
    if not isinstance(spec, Autoscaling):
        raise DefinitionError(
            _problem(server, f"autoscaling {spec!r} is not an Autoscaling"),
            fix="give Autoscaling(metric='queue_time', target=20000, max_replicas=4)",
            field="autoscaling",
        )
    metric: object = spec.metric
    if metric not in get_args(AutoscalingMetric):
        raise DefinitionError(
            _problem(server, f"autoscaling metric {metric!r} is not a Triton metric rtflow knows"),
            fix="use 'queue_time' (microseconds per request) or 'pending_requests' (per pod)",
            field="autoscaling.metric",
        )
    engine: object = spec.engine
    if engine not in get_args(AutoscalingEngine):
        raise DefinitionError(
            _problem(server, f"autoscaling engine {engine!r} is unknown"),
            fix="use 'hpa' (autoscaling/v2 + prometheus-adapter) or 'keda' (KEDA ScaledObject)",
            field="autoscaling.engine",
        )
    _whole(spec.target, server=server, field="autoscaling.target", lowest=1, highest=10**12)
    low = _whole(
        spec.min_replicas,
        server=server,
        field="autoscaling.min_replicas",
        lowest=1,
        highest=MAX_REPLICAS,
    )
    high = _whole(
        spec.max_replicas,
        server=server,
        field="autoscaling.max_replicas",
        lowest=1,
        highest=MAX_REPLICAS,
    )
    if low > high:
        raise DefinitionError(
            _problem(server, f"autoscaling min_replicas {low} is above max_replicas {high}"),
            fix="make min_replicas <= max_replicas",
            field="autoscaling.min_replicas",
        )
    if spec.model is not None and spec.model not in {model.name for model in models}:
        raise DefinitionError(
            _problem(server, f"autoscaling reads model {spec.model!r}, which it does not serve"),
            fix=f"use one of {', '.join(model.name for model in models)}, or None for all",
            field="autoscaling.model",
        )
    window: object = spec.window
    try:
        seconds = parse_go_duration(window) if isinstance(window, str) else Decimal(0)
    except ValueError:
        seconds = Decimal(0)
    if not isinstance(window, str) or not re.match(r"^[0-9]+[smh]$", window) or seconds < 15:
        raise DefinitionError(
            _problem(
                server, f"autoscaling window {window!r} is not a Prometheus range of 15s or more"
            ),
            fix="use e.g. '30s', '1m' or '5m'",
            field="autoscaling.window",
        )
    url: object = spec.prometheus_url
    if not isinstance(url, str) or not re.match(
        r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?(/\S*)?$", url
    ):
        raise DefinitionError(
            _problem(server, f"prometheus_url {url!r} is not an http(s) URL"),
            fix="give the Prometheus query endpoint, e.g. 'http://prometheus-operated.monitoring.svc:9090'",
            field="autoscaling.prometheus_url",
        )
    _whole(
        spec.scale_down_stabilization_seconds,
        server=server,
        field="autoscaling.scale_down_stabilization_seconds",
        lowest=0,
        highest=3600,
    )
    return spec


def _check_models(server: str, models: object, pool: GpuPool | None) -> tuple[TritonModel, ...]:
    if isinstance(models, TritonModel):
        models = [models]
    if not isinstance(models, Sequence) or not models:
        raise DefinitionError(
            _problem(server, "serves no models"),
            fix="give models=[triton_model(...)]",
            field="models",
        )
    chosen: dict[str, TritonModel] = {}
    for model in models:
        if not isinstance(model, TritonModel):
            raise DefinitionError(
                _problem(server, f"{model!r} is not a model declared with rtflow.gpu.triton_model"),
                fix="declare it with triton_model(...)",
                field="models",
            )
        if model.name in chosen:
            raise DefinitionError(
                _problem(server, f"serves two models named {model.name!r}"),
                fix="give each model its own name",
                field="models",
            )
        chosen[model.name] = model
    for model in chosen.values():
        field = f"models[{model.name}].instance_groups"
        if model.needs_gpu and pool is None:
            raise DefinitionError(
                _problem(
                    server,
                    f"model {model.name!r} runs on GPUs ({_gpu_reason(model)}) but the server "
                    "has no GPU pool",
                ),
                fix="give pool=gpu_pool(...), or use KIND_CPU instance groups",
                field="pool",
            )
        if pool is None:
            continue
        for index, group in enumerate(model.instance_groups):
            beyond = [gpu for gpu in group.gpus if gpu >= pool.gpus_per_pod]
            if beyond:
                unit = "MIG slice(s)" if pool.mig is not None else "GPU(s)"
                raise DefinitionError(
                    _problem(
                        server,
                        f"model {model.name!r} instance group {index} uses GPU index(es) "
                        f"{beyond}, but each pod of pool {pool.name!r} gets {pool.gpus_per_pod} "
                        f"{unit} ({_indices(pool.gpus_per_pod)})",
                    ),
                    fix=f"use gpus below {pool.gpus_per_pod}, or raise the pool's gpus_per_pod",
                    field=f"{field}[{index}].gpus",
                )
    _check_credentials(server, list(chosen.values()))
    return tuple(chosen[name] for name in sorted(chosen))


def _gpu_reason(model: TritonModel) -> str:
    if any(group.kind == "KIND_GPU" for group in model.instance_groups):
        return "a KIND_GPU instance group"
    return f"{model.runtime} is GPU-only"


def _check_credentials(server: str, models: Sequence[TritonModel]) -> None:
    """Triton reads cloud credentials from process-wide settings: one set per cloud per server."""
    for kind in ("s3", "gs"):
        seen = {
            (model.repository.secret, model.repository.secret_keys, model.repository.region)
            for model in models
            if model.repository.kind == kind and model.repository.secret is not None
        }
        if len(seen) > 1:
            raise DefinitionError(
                _problem(server, f"its models use different {kind}:// credentials"),
                fix=f"give every {kind}:// repository of one server the same secret, "
                "or serve them from separate servers",
                field="models",
            )


def server_resources(
    server: str, cpu: object, memory: object, cpu_limit: object, memory_limit: object
) -> ir.Resources:
    """Requests and limits of a server's pods, checked (limits default to the requests)."""
    cpu_request = check_quantity(cpu, kind="cpu", field="cpu")
    memory_request = check_quantity(memory, kind="memory", field="memory")
    cpu_max = check_quantity(
        cpu_limit if cpu_limit is not None else cpu_request, kind="cpu", field="cpu_limit"
    )
    memory_max = check_quantity(
        memory_limit if memory_limit is not None else memory_request,
        kind="memory",
        field="memory_limit",
    )
    for request, limit, field in (
        (cpu_request, cpu_max, "cpu_limit"),
        (memory_request, memory_max, "memory_limit"),
    ):
        if parse_quantity(limit) < parse_quantity(request):
            raise DefinitionError(
                _problem(server, f"{field} {limit!r} is below the request {request!r}"),
                fix=f"make {field} at least {request!r}",
                field=field,
            )
    return ir.Resources(
        cpu_request=cpu_request,
        memory_request=memory_request,
        cpu_limit=cpu_max,
        memory_limit=memory_max,
    )


def triton_serving(
    name: str,
    models: Sequence[TritonModel] | TritonModel,
    *,
    pool: GpuPool | None = None,
    replicas: int = 1,
    cpu: str = "2",
    memory: str = "4Gi",
    cpu_limit: str | None = None,
    memory_limit: str | None = None,
    image: str = DEFAULT_IMAGE,
    autoscaling: Autoscaling | None = None,
    prometheus: bool = True,
    shm_size: str = "1Gi",
    scratch_size: str | None = None,
    namespace: str | None = None,
    part_of: str | None = None,
    labels: Mapping[str, str] | None = None,
    service_account: str | None = None,
    exit_timeout_seconds: int = 30,
    startup_timeout_seconds: int = 600,
    max_unavailable: int = 1,
    admin_key: SecretKey | None = None,
) -> TritonServing:
    """Declare a Triton server; every rule is checked here, so a :class:`TritonServing` is valid.

    Args:
        name: DNS-1035 label (it names the Deployment and the Service).
        models: the models it serves (loaded explicitly, nothing else from their repositories).
        pool: the GPU pool; required when a model has KIND_GPU instance groups.
        replicas: pods when not autoscaled (the autoscaler owns the count otherwise).
        cpu, memory, cpu_limit, memory_limit: container resources (limits default to requests).
        image: defaults to ``nvcr.io/nvidia/tritonserver:24.10-py3``; see :func:`triton_image`.
        autoscaling: bounds and target on a Triton metric (:class:`Autoscaling`).
        prometheus: add the ``prometheus.io/*`` scrape annotations for port 8002.
        shm_size: the memory-backed ``/dev/shm`` (Python backend tensors pass through it).
        scratch_size: size limit of the ``/tmp`` emptyDir (cloud repositories download there).
        part_of: ``app.kubernetes.io/part-of`` (e.g. the pipeline); defaults to ``name``.
        exit_timeout_seconds: Triton's ``--exit-timeout-secs`` for in-flight requests on stop;
            the pod's grace period is 15 s longer.
        startup_timeout_seconds: how long the startup probe waits for every model to load.
        max_unavailable: the PodDisruptionBudget's ``maxUnavailable``.
        admin_key: the Secret key whose value opens Triton's administrative API (model load
            and unload, configuration, shared memory, logging) as header ``triton-admin-key``;
            without it that API is closed to everyone (:mod:`rtflow.gpu.admin_api`).
    """
    check_dns1123_label(name, field="name", what="Triton server name")
    if not name[0].isalpha():
        raise DefinitionError(
            f"Triton server name {name!r} starts with a digit, which a Service name cannot",
            fix=f"use e.g. {'triton-' + name!r}",
            field="name",
        )
    if pool is not None and not isinstance(pool, GpuPool):
        raise DefinitionError(
            _problem(name, f"pool {pool!r} is not a pool declared with rtflow.gpu.gpu_pool"),
            fix="declare it with gpu_pool(...)",
            field="pool",
        )
    served = _check_models(name, models, pool)
    _whole(replicas, server=name, field="replicas", lowest=1, highest=MAX_REPLICAS)
    resources = server_resources(name, cpu, memory, cpu_limit, memory_limit)
    scaling = _check_autoscaling(name, autoscaling, served) if autoscaling is not None else None
    shm = check_quantity(shm_size, kind="memory", field="shm_size")
    scratch = (
        check_quantity(scratch_size, kind="memory", field="scratch_size") if scratch_size else None
    )
    if namespace is not None:
        check_dns1123_label(namespace, field="namespace", what="namespace")
    if part_of is not None:
        check_label(label_keys.PART_OF, part_of, field="part_of")
    user_labels: dict[str, str] = {}
    for key, value in (labels or {}).items():
        check_label(key, value, field="labels")
        if key == label_keys.MANAGED_BY_KEY or key in selector_labels(name):
            raise DefinitionError(
                _problem(name, f"label {key!r} is set by rtflow"),
                fix="drop it (rtflow sets app.kubernetes.io/name, component and managed-by)",
                field="labels",
            )
        user_labels[key] = value
    if service_account is not None:
        check_dns1123_subdomain(service_account, field="service_account", what="service account")
    _whole(exit_timeout_seconds, server=name, field="exit_timeout_seconds", lowest=1, highest=3600)
    _whole(
        startup_timeout_seconds,
        server=name,
        field="startup_timeout_seconds",
        lowest=30,
        highest=86400,
    )
    _whole(max_unavailable, server=name, field="max_unavailable", lowest=1, highest=MAX_REPLICAS)
    if admin_key is not None and not isinstance(admin_key, SecretKey):
        raise DefinitionError(
            _problem(name, f"admin_key {admin_key!r} is not a Secret key"),
            fix="give admin_key=rtflow.SecretKey('<secret>', '<key>')",
            field="admin_key",
        )
    if not isinstance(prometheus, bool):
        raise DefinitionError(
            _problem(name, "prometheus must be True or False"),
            fix="give a bool",
            field="prometheus",
        )
    return TritonServing(
        name=name,
        models=served,
        resources=resources,
        pool=pool,
        replicas=replicas,
        image=_check_image(name, image),
        autoscaling=scaling,
        prometheus=prometheus,
        shm_size=shm,
        scratch_size=scratch,
        namespace=namespace,
        part_of=part_of,
        labels=tuple(sorted(user_labels.items())),
        service_account=service_account,
        exit_timeout_seconds=exit_timeout_seconds,
        startup_timeout_seconds=startup_timeout_seconds,
        max_unavailable=max_unavailable,
        admin_key=admin_key,
    )


# -- addresses -----------------------------------------------------------------------------------


def service_url(serving: TritonServing, *, namespace: str | None = None) -> str:
    """The in-cluster KServe v2 REST base URL, e.g. ``http://fraud-triton.fraud.svc:8000``."""
    ns = namespace or serving.namespace
    host = f"{serving.name}.{ns}.svc" if ns else serving.name
    return f"http://{host}:{HTTP_PORT}"


def infer_url(serving: TritonServing, model: str, *, namespace: str | None = None) -> str:
    """``<service>/v2/models/<model>/infer``: what an Argo ``http`` inference step calls."""
    if model not in {served.name for served in serving.models}:
        raise DefinitionError(
            _problem(serving.name, f"does not serve model {model!r}"),
            fix=f"call one of {', '.join(served.name for served in serving.models)}",
            field="model",
        )
    return f"{service_url(serving, namespace=namespace)}/v2/models/{model}/infer"


def grpc_address(serving: TritonServing, *, namespace: str | None = None) -> str:
    """``host:8001`` for tritonclient's gRPC client (no scheme)."""
    ns = namespace or serving.namespace
    host = f"{serving.name}.{ns}.svc" if ns else serving.name
    return f"{host}:{GRPC_PORT}"


# -- labels --------------------------------------------------------------------------------------


def selector_labels(name: str) -> dict[str, str]:
    """The immutable Deployment selector: stable across every change but the server's name."""
    return {label_keys.COMPONENT: COMPONENT, label_keys.NAME: name}


def serving_labels(serving: TritonServing) -> dict[str, str]:
    found = dict(serving.labels)
    found.update(
        {
            label_keys.NAME: serving.name,
            label_keys.PART_OF: serving.part_of or serving.name,
            label_keys.MANAGED_BY_KEY: label_keys.MANAGED_BY,
            label_keys.COMPONENT: COMPONENT,
        }
    )
    return dict(sorted(found.items()))


def _metadata(serving: TritonServing, name: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name or serving.name}
    if serving.namespace:
        meta["namespace"] = serving.namespace
    meta["labels"] = serving_labels(serving)
    return meta


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


# -- the Deployment ------------------------------------------------------------------------------


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


def _pod_annotations(serving: TritonServing) -> dict[str, str]:
    if not serving.prometheus:
        return {}
    return {
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


def _required_autoscaling(serving: TritonServing) -> Autoscaling:
    if serving.autoscaling is None:
        raise DefinitionError(
            _problem(serving.name, "has no autoscaling"),
            fix="give autoscaling=Autoscaling(...)",
            field="autoscaling",
        )
    return serving.autoscaling


def _scale_target(serving: TritonServing) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": serving.name}


def horizontal_pod_autoscaler(serving: TritonServing) -> dict[str, Any]:
    """autoscaling/v2 HPA on a per-pod custom metric served by prometheus-adapter."""
    scaling = _required_autoscaling(serving)
    metric: dict[str, Any] = {"name": HPA_METRICS[scaling.metric]}
    if scaling.model is not None:
        metric["selector"] = {"matchLabels": {"model": scaling.model}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(serving),
        "spec": {
            "scaleTargetRef": _scale_target(serving),
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": metric,
                        "target": {"type": "AverageValue", "averageValue": str(scaling.target)},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                },
            },
        },
    }


def prometheus_adapter_rules(serving: TritonServing) -> dict[str, Any]:
    """The prometheus-adapter ``rules`` that define :data:`HPA_METRICS` from Triton's metrics.

    Merge them into the adapter's configuration (Helm value ``rules.custom``). They assume the
    usual Kubernetes scrape labels ``namespace`` and ``pod`` on Triton's series.
    """
    scaling = _required_autoscaling(serving)
    window = scaling.window
    resources = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    queue, success, pending = (
        TRITON_METRICS["queue_duration"],
        TRITON_METRICS["request_success"],
        TRITON_METRICS["pending"],
    )
    rules = [
        {
            "seriesQuery": f'{queue}{{namespace!="",pod!=""}}',
            "resources": resources,
            "name": {"matches": f"^{queue}$", "as": HPA_METRICS["queue_time"]},
            "metricsQuery": (
                f"sum(increase({queue}{{<<.LabelMatchers>>}}[{window}])) by (<<.GroupBy>>)"
                f" / (1 + sum(increase({success}{{<<.LabelMatchers>>}}[{window}]))"
                " by (<<.GroupBy>>))"
            ),
        },
        {
            "seriesQuery": f'{pending}{{namespace!="",pod!=""}}',
            "resources": resources,
            "name": {"matches": f"^{pending}$", "as": HPA_METRICS["pending_requests"]},
            "metricsQuery": f"sum({pending}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)",
        },
    ]
    return {"rules": rules}


def keda_query(serving: TritonServing) -> tuple[str, str]:
    """The PromQL query and KEDA metricType of the autoscaling target."""
    scaling = _required_autoscaling(serving)
    matchers = []
    if serving.namespace:
        matchers.append(f'namespace="{serving.namespace}"')
    matchers.append(f'pod=~"{serving.name}-[a-z0-9]+-[a-z0-9]+"')
    if scaling.model is not None:
        matchers.append(f'model="{scaling.model}"')
    labels = "{" + ",".join(matchers) + "}"
    if scaling.metric == "pending_requests":
        return f"sum({TRITON_METRICS['pending']}{labels})", "AverageValue"
    window = scaling.window
    query = (
        f"sum(increase({TRITON_METRICS['queue_duration']}{labels}[{window}]))"
        f" / (1 + sum(increase({TRITON_METRICS['request_success']}{labels}[{window}])))"
    )
    return query, "Value"


def keda_scaled_object(serving: TritonServing) -> dict[str, Any]:
    """A KEDA ``ScaledObject`` (keda.sh/v1alpha1) with a Prometheus trigger."""
    scaling = _required_autoscaling(serving)
    query, metric_type = keda_query(serving)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(serving),
        "spec": {
            "scaleTargetRef": _scale_target(serving),
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": metric_type,
                    "metadata": {
                        "serverAddress": scaling.prometheus_url,
                        "query": query,
                        "threshold": str(scaling.target),
                    },
                }
            ],
        },
    }


def serving_manifests(serving: TritonServing) -> list[dict[str, Any]]:
    """Deployment, Service, PodDisruptionBudget and (when declared) the autoscaler, in order."""
    objects = [deployment(serving), service(serving), pod_disruption_budget(serving)]
    if serving.autoscaling is not None:
        if serving.autoscaling.engine == "keda":
            objects.append(keda_scaled_object(serving))
        else:
            objects.append(horizontal_pod_autoscaler(serving))
    return objects


def serving_for_model(
    servings: Sequence[TritonServing], model: str, *, stage: str | None = None
) -> TritonServing:
    """The one server serving ``model``: the bundle's check that an inference step has a target."""
    found = [serving for serving in servings if any(m.name == model for m in serving.models)]
    if len(found) == 1:
        return found[0]
    if not found:
        served = sorted({m.name for serving in servings for m in serving.models})
        raise DefinitionError(
            f"no Triton server serves model {model!r}",
            fix=f"call one of {', '.join(served)}"
            if served
            else "declare a triton_serving(...) that serves it",
            field="model",
            stage=stage,
        )
    raise DefinitionError(
        f"model {model!r} is served by {len(found)} Triton servers "
        f"({', '.join(serving.name for serving in found)})",
        fix="serve each model from one server, or name the server of the inference step",
        field="model",
        stage=stage,
    )


def model_gpu_pool(serving: TritonServing, model: str) -> GpuPool | None:
    """The pool a served model runs on (``None``: CPU only), for the bundle's cross-checks."""
    return serving.pool if serving.model(model).needs_gpu else None


def _indices(count: int) -> str:
    return "index 0" if count == 1 else f"indices 0-{count - 1}"
