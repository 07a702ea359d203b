"""A Triton server declaration, checked once: what it serves, on which pool, with what.

:func:`triton_serving` checks a server declaration (and how its models fit the pool) once and
returns a frozen :class:`TritonServing`; the objects that run it (:mod:`rtflow.gpu.server_pod`,
:mod:`rtflow.gpu.autoscalers`) and the addresses that reach it (:mod:`rtflow.gpu.addresses`)
trust it. Its names and labels live here too: the Deployment's selector must stay stable
across every change but the server's name, and generators outside :mod:`rtflow.gpu` (network
policies, monitors) select its pods by them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Literal, get_args

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.generators import labels as label_keys
from rtflow.gpu.ensemble import check_served_steps
from rtflow.gpu.models import TritonModel
from rtflow.gpu.pools import GpuPool
from rtflow.names import check_dns1123_label, check_dns1123_subdomain, check_label
from rtflow.quantity import check_quantity, parse_go_duration, parse_quantity
from rtflow.triggers import SecretKey

__all__ = [
    "COMPONENT",
    "DEFAULT_IMAGE",
    "GRPC_PORT",
    "HTTP_PORT",
    "METRICS_PORT",
    "Autoscaling",
    "TritonServing",
    "selector_labels",
    "server_resources",
    "serving_labels",
    "triton_image",
    "triton_serving",
]

HTTP_PORT: Final = 8000
GRPC_PORT: Final = 8001
METRICS_PORT: Final = 8002
COMPONENT: Final = "inference-server"
IMAGE_REPOSITORY: Final = "nvcr.io/nvidia/tritonserver"
DEFAULT_TAG: Final = "24.10"
"""Triton 2.51.0: the release whose CPU build nvidia-pytriton 0.7 ships, which the tests run."""
MAX_REPLICAS: Final = 100
AutoscalingMetric = Literal["queue_time", "pending_requests"]
AutoscalingEngine = Literal["hpa", "keda"]


ImageVariant = Literal["py3", "vllm-python-py3", "trtllm-python-py3"]
LLM_IMAGE_VARIANTS: Final[dict[str, ImageVariant]] = {
    "vllm": "vllm-python-py3",
    "tensorrtllm": "trtllm-python-py3",
}
"""The NGC image that carries each LLM backend (the plain ``-py3`` image has neither)."""


def triton_image(tag: str = DEFAULT_TAG, variant: ImageVariant = "py3") -> str:
    """``nvcr.io/nvidia/tritonserver:<yy.mm>-py3`` (the image with the Python backend), or
    the variant with an LLM backend: ``vllm-python-py3``, ``trtllm-python-py3``."""
    if not re.match(r"^[0-9]{2}\.[0-9]{2}$", tag):
        raise DefinitionError(
            f"Triton image tag {tag!r} is not a release such as '24.10'",
            fix="give the NGC release as yy.mm, or pass the whole image to image=",
            field="image",
        )
    if variant not in get_args(ImageVariant):
        raise DefinitionError(
            f"Triton image variant {variant!r} is not one NGC publishes",
            fix=f"use one of {', '.join(get_args(ImageVariant))}",
            field="image",
        )
    return f"{IMAGE_REPOSITORY}:{tag}-{variant}"


def _server_image(server: str, image: str | None, models: Sequence[TritonModel]) -> str:
    """The image given, or the default one that has the backends ``models`` need; an NGC
    image without a backend a model needs is refused (the model would never load)."""
    needed = sorted(
        {LLM_IMAGE_VARIANTS[m.backend] for m in models if m.backend in LLM_IMAGE_VARIANTS}
    )
    if len(needed) > 1:
        raise DefinitionError(
            _problem(server, "serves both vLLM and TensorRT-LLM models, which no image has"),
            fix="serve them from two triton_serving(...) servers",
            field="models",
        )
    if image is None:
        return triton_image(DEFAULT_TAG, needed[0]) if needed else DEFAULT_IMAGE
    checked = _check_image(server, image)
    ngc = re.match(
        rf"^{re.escape(IMAGE_REPOSITORY)}:([0-9]{{2}}\.[0-9]{{2}})-([a-z0-9-]+)(@.*)?$", checked
    )
    if needed and ngc is not None and ngc[2] != needed[0]:
        raise DefinitionError(
            _problem(server, f"image {checked!r} has no {needed[0].split('-')[0]} backend"),
            fix=f"use triton_image({ngc[1]!r}, {needed[0]!r}), or leave image unset",
            field="image",
        )
    return checked


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
    check_served_steps(server, chosen)
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
        _check_engine_gpus(server, model, pool)
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
    if model.gpus_per_instance > 0:
        return f"its engine spans {model.gpus_per_instance} GPU(s)"
    if model.ensemble_steps:
        return "a step model runs on GPUs"
    return f"{model.runtime} is GPU-only"


def _check_engine_gpus(server: str, model: TritonModel, pool: GpuPool) -> None:
    """An LLM engine (vLLM, TensorRT-LLM) places itself on whole GPUs of its pod: every
    instance's tensor x pipeline parallel GPUs must fit in what one pod of the pool gets, and
    an engine spanning several GPUs cannot span MIG slices (no NCCL between them)."""
    per_engine = model.gpus_per_instance
    if per_engine == 0:
        return
    if pool.mig is not None and per_engine > 1:
        raise DefinitionError(
            _problem(
                server,
                f"model {model.name!r} spans {per_engine} GPUs per engine, but pool "
                f"{pool.name!r} hands out MIG slices, which one engine cannot span",
            ),
            fix="put it on a pool of whole GPUs, or use one GPU per engine",
            field=f"models[{model.name}]",
        )
    engines = sum(group.count for group in model.instance_groups) or 1
    if model.backend == "tensorrtllm":
        engines = 1  # its one KIND_CPU instance drives the one engine
    needed = per_engine * engines
    if needed > pool.gpus_per_pod:
        raise DefinitionError(
            _problem(
                server,
                f"model {model.name!r} needs {needed} GPU(s) per pod ({engines} engine(s) of "
                f"{per_engine}), but each pod of pool {pool.name!r} gets {pool.gpus_per_pod}",
            ),
            fix=f"give the pool gpus_per_pod={needed}, or lower the model's parallelism",
            field=f"models[{model.name}]",
        )


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
    image: str | None = None,
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
        image: defaults to ``nvcr.io/nvidia/tritonserver:24.10-py3``, or its
            ``-vllm-python-py3`` / ``-trtllm-python-py3`` variant for LLM models; see
            :func:`triton_image`.
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
        image=_server_image(name, image, served),
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


def _indices(count: int) -> str:
    return "index 0" if count == 1 else f"indices 0-{count - 1}"
