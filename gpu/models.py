"""Triton models: declaration, validation, and where the model repository lives.

:func:`triton_model` checks a declaration once and returns a frozen :class:`TritonModel`; every
later step (``config.pbtxt`` rendering in :mod:`rtflow.gpu.config`, serving manifests, KServe v2
request bodies) trusts it. Field names follow Triton's ``model_config.proto`` so that a reader of
Triton's documentation finds them again: ``max_batch_size``, ``dynamic_batching``,
``instance_group``, ``version_policy``, ``model_warmup``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Literal, cast, get_args

from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label, check_dns1123_subdomain, check_env_name

__all__ = [
    "BACKENDS",
    "DATA_TYPES",
    "GPU_ONLY_PLATFORMS",
    "MAX_BATCH_SIZE",
    "MAX_QUEUE_DELAY_MICROSECONDS",
    "PLATFORMS",
    "DataType",
    "DynamicBatching",
    "InstanceGroup",
    "ModelVersion",
    "QueuePolicy",
    "Repository",
    "Tensor",
    "TritonModel",
    "VersionPolicy",
    "Warmup",
    "WarmupInput",
    "WarmupSample",
    "cpu_variant",
    "data_type",
    "model_repository",
    "triton_model",
]

DataType = Literal[
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
]
DATA_TYPES: Final[tuple[str, ...]] = get_args(DataType)
_DTYPE_ALIASES: Final[dict[str, str]] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "half": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "double": "TYPE_FP64",
    "bytes": "TYPE_STRING",
    "string": "TYPE_STRING",
    "str": "TYPE_STRING",
    "bfloat16": "TYPE_BF16",
}

PLATFORMS: Final[dict[str, str]] = {
    "onnxruntime_onnx": "model.onnx",
    "tensorrt_plan": "model.plan",
    "pytorch_libtorch": "model.pt",
    "tensorflow_savedmodel": "model.savedmodel",
    "tensorflow_graphdef": "model.graphdef",
}
"""Triton platforms and the default model file each loads from a version folder."""
BACKENDS: Final[tuple[str, ...]] = (
    "python",
    "onnxruntime",
    "tensorrt",
    "pytorch",
    "tensorflow",
    "openvino",
    "fil",
    "dali",
    "vllm",
    "tensorrtllm",
)
"""Backends Triton ships; a custom backend name of the same form is accepted too."""
GPU_ONLY_PLATFORMS: Final = frozenset({"tensorrt_plan", "tensorrt", "tensorrtllm"})
MAX_BATCH_SIZE: Final = 1 << 16
MAX_QUEUE_DELAY_MICROSECONDS: Final = 60_000_000
MAX_INSTANCES: Final = 64
MAX_DIM: Final = (1 << 31) - 1

_TENSOR_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/\-]*$")
_BACKEND_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAMETER_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
_ENDPOINT: Final = re.compile(r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$")
_PATH_PART: Final = re.compile(r"^[A-Za-z0-9._\-]+$")

InstanceKind = Literal["KIND_GPU", "KIND_CPU", "KIND_AUTO"]
TimeoutAction = Literal["REJECT", "DELAY"]
WarmupData = Literal["zero", "random"]
RepositoryKind = Literal["s3", "gs", "pvc", "local"]


def _problem(model: str, text: str) -> str:
    return f"model {model!r}: {text}"


def _whole(
    value: object, *, model: str, field: str, what: str, lowest: int, highest: int, fix: str = ""
) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise DefinitionError(
            _problem(model, f"{what} {value!r} is out of range"),
            fix=fix or f"use a whole number from {lowest} to {highest}",
            field=field,
        )
    return value


# -- tensors -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """An input or output tensor. ``dims`` exclude the batch dimension; ``-1`` is variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]


def data_type(text: object, *, field: str = "data_type", model: str = "?") -> DataType:
    """Triton's ``TYPE_*`` name for ``TYPE_FP32``, ``FP32``, ``fp32`` or ``float32``."""
    if isinstance(text, str):
        upper = text.strip().upper()
        candidate = upper if upper.startswith("TYPE_") else f"TYPE_{upper}"
        if candidate == "TYPE_BYTES":
            candidate = "TYPE_STRING"
        if candidate in DATA_TYPES:
            return cast(DataType, candidate)
        alias = _DTYPE_ALIASES.get(text.strip().lower())
        if alias is not None:
            return cast(DataType, alias)
    raise DefinitionError(
        _problem(model, f"data type {text!r} is not a Triton data type"),
        fix=f"use one of {', '.join(DATA_TYPES)}",
        field=field,
    )


def _tensor(spec: object, *, model: str, field: str) -> Tensor:
    name: object
    dtype: object
    dims: object
    if isinstance(spec, Tensor):
        name, dtype, dims = spec.name, spec.data_type, spec.dims
    elif isinstance(spec, Mapping):
        name, dtype, dims = spec.get("name"), spec.get("data_type"), spec.get("dims")
    elif isinstance(spec, (tuple, list)) and len(spec) == 3:
        name, dtype, dims = spec
    else:
        raise DefinitionError(
            _problem(model, f"tensor {spec!r} is not (name, data_type, dims)"),
            fix="declare it as Tensor('features', 'TYPE_FP32', (5,)) or ('features', 'FP32', [5])",
            field=field,
        )
    if not isinstance(name, str) or not _TENSOR_NAME.match(name):
        raise DefinitionError(
            _problem(model, f"tensor name {name!r} is not valid"),
            fix="use letters, digits, '_', '.', ':', '/' or '-', starting with a letter or '_'",
            field=field,
        )
    field = f"{field.rsplit('[', 1)[0]}[{name}]"
    checked = data_type(dtype, field=f"{field}.data_type", model=model)
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise DefinitionError(
            _problem(model, f"tensor {name!r} dims {dims!r} is not a non-empty list"),
            fix="give the shape without the batch dimension, e.g. [5] or [-1, 128]",
            field=f"{field}.dims",
        )
    for dim in dims:
        if (
            isinstance(dim, bool)
            or not isinstance(dim, int)
            or not (dim == -1 or 1 <= dim <= MAX_DIM)
        ):
            raise DefinitionError(
                _problem(model, f"tensor {name!r} dims {list(dims)!r}: {dim!r} is out of range"),
                fix="use positive sizes, or -1 for a variable-size dimension",
                field=f"{field}.dims",
            )
    return Tensor(name=name, data_type=checked, dims=tuple(dims))


# -- scheduling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class QueuePolicy:
    """Triton's ``default_queue_policy``: what happens to requests waiting to be batched."""

    timeout_action: TimeoutAction = "REJECT"
    default_timeout_microseconds: int = 0
    allow_timeout_override: bool = False
    max_queue_size: int = 0


@dataclass(frozen=True)
class DynamicBatching:
    """Triton's ``dynamic_batching``; the delay is in microseconds, as in Triton."""

    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0
    preserve_ordering: bool = False
    default_queue_policy: QueuePolicy | None = None


@dataclass(frozen=True)
class InstanceGroup:
    """Copies of the model: ``count`` per listed GPU (``gpus``), per GPU, or on CPU."""

    count: int = 1
    kind: InstanceKind = "KIND_GPU"
    gpus: tuple[int, ...] = ()


@dataclass(frozen=True)
class VersionPolicy:
    """Which versions Triton serves: the latest ``num_versions``, all, or specific ones."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    @classmethod
    def latest(cls, num_versions: int = 1) -> VersionPolicy:
        return cls("latest", num_versions=num_versions)

    @classmethod
    def all(cls) -> VersionPolicy:
        return cls("all", num_versions=0)

    @classmethod
    def specific(cls, *versions: int) -> VersionPolicy:
        return cls("specific", num_versions=0, versions=tuple(versions))


@dataclass(frozen=True)
class Warmup:
    """A warm-up request Triton sends before a model is READY: one sample of every input.

    ``dims`` gives a concrete shape for inputs with variable (-1) dimensions.
    """

    batch_size: int = 1
    data: WarmupData = "zero"
    count: int = 1
    dims: Mapping[str, Sequence[int]] | None = None


@dataclass(frozen=True)
class WarmupInput:
    name: str
    data_type: str
    dims: tuple[int, ...]
    data: WarmupData


@dataclass(frozen=True)
class WarmupSample:
    name: str
    batch_size: int
    count: int
    inputs: tuple[WarmupInput, ...]


# -- repository ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repository:
    """Where a model repository lives, parsed; build it with :func:`model_repository`.

    * ``s3``: ``location`` is the bucket (``host:port/bucket`` for an S3-compatible endpoint),
      ``path`` the prefix; credentials from ``secret``: Triton's credential file under
      ``secret_keys`` ``{"file": key}`` (the default, mounted), or env name -> key.
    * ``gs``: ``location`` is the bucket; credentials from a service-account key file in
      ``secret`` under ``secret_keys[0][1]``, mounted and named by GOOGLE_APPLICATION_CREDENTIALS.
    * ``pvc``: ``location`` is the claim, ``path`` the folder inside it (mounted read-only).
    * ``local``: a folder on this machine (local runs and tests only).
    """

    uri: str
    kind: RepositoryKind
    location: str
    path: str = ""
    secret: str | None = None
    secret_keys: tuple[tuple[str, str], ...] = ()
    region: str | None = None


# By default an s3 Secret holds Triton's cloud credential file (JSON: {"s3": {"": {"key_id":
# ..., "secret_key": ..., "region": ...}}}), mounted as a file and named by
# TRITON_CLOUD_CREDENTIAL_PATH: credentials stay out of the environment. Environment variables
# (AWS_ACCESS_KEY_ID, ...) remain an explicit choice: secret_keys={"AWS_ACCESS_KEY_ID": ...}.
_S3_DEFAULT_KEYS: Final = (("file", "credentials.json"),)
_GCS_DEFAULT_KEY: Final = "credentials.json"
_REPOSITORY_FIX: Final = (
    "use 's3://bucket/path', 'gs://bucket/path', 'pvc://claim/path' or a local folder"
)


def model_repository(
    uri: str | os.PathLike[str] | Repository,
    *,
    secret: str | None = None,
    secret_keys: Mapping[str, str] | None = None,
    region: str | None = None,
    field: str = "repository",
) -> Repository:
    """Parse and check where a model repository lives.

    Args:
        uri: ``s3://bucket/path``, ``s3://host:port/bucket/path``, ``gs://bucket/path``,
            ``pvc://claim/path`` or a local folder.
        secret: the Secret with the cloud credentials (never the credentials themselves).
        secret_keys: for s3, environment variable -> key in the Secret (default: the keys
            ``{"file": "credentials.json"}``: Triton's cloud credential file, mounted; or
            ``{"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...}`` for environment
            variables); for gs, ``{"key": "<file>"}``
            (default ``credentials.json``).
        region: for s3, ``AWS_DEFAULT_REGION``.
    """
    if isinstance(uri, Repository):
        return uri
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(
            f"model repository {uri!r} is empty", fix=_REPOSITORY_FIX, field=field
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        if secret is not None or region is not None:
            raise DefinitionError(
                f"model repository {text!r} is a local folder, which takes no secret or region",
                fix="drop secret/region, or use an s3:// or gs:// repository",
                field=field,
            )
        return Repository(uri=text, kind="local", location=text)
    if scheme not in ("s3", "gs", "pvc"):
        raise DefinitionError(
            f"model repository {text!r} has scheme {scheme + '://'!r}, "
            "which rtflow cannot serve from",
            fix=_REPOSITORY_FIX,
            field=field,
        )
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    endpoint = ""
    if scheme == "s3" and parts and _ENDPOINT.match(parts[0]):
        endpoint = parts.pop(0)
    if not parts:
        raise DefinitionError(
            f"model repository {text!r} names no {'claim' if scheme == 'pvc' else 'bucket'}",
            fix=_REPOSITORY_FIX,
            field=field,
        )
    head, path_parts = parts[0], parts[1:]
    if scheme == "pvc":
        check_dns1123_subdomain(head, field=field, what="PersistentVolumeClaim name")
    elif not _BUCKET.match(head) or ".." in head:
        raise DefinitionError(
            f"model repository {text!r}: {head!r} is not a bucket name",
            fix="use 3-63 lower-case letters, digits, '.', '-' or '_'",
            field=field,
        )
    for part in path_parts:
        if not _PATH_PART.match(part) or part in (".", ".."):
            raise DefinitionError(
                f"model repository {text!r}: path segment {part!r} is not allowed",
                fix="use letters, digits, '.', '_' and '-' between slashes, no '..'",
                field=field,
            )
    location = f"{endpoint}/{head}" if endpoint else head
    path = "/".join(path_parts)
    normalized = f"{scheme}://{location}" + (f"/{path}" if path else "")
    keys: tuple[tuple[str, str], ...] = ()
    if scheme == "pvc" and (secret is not None or region is not None):
        raise DefinitionError(
            f"model repository {text!r} is a PVC, which takes no secret or region",
            fix="drop secret/region (the claim is mounted read-only)",
            field=field,
        )
    if scheme == "gs" and region is not None:
        raise DefinitionError(
            f"model repository {text!r}: region applies to s3 only",
            fix="drop region",
            field=field,
        )
    if secret is not None:
        check_dns1123_subdomain(secret, field=f"{field}.secret", what="Secret name")
        if scheme == "s3":
            given = dict(secret_keys) if secret_keys else dict(_S3_DEFAULT_KEYS)
            for env_name, key in given.items():
                if env_name != "file":
                    check_env_name(env_name, field=f"{field}.secret_keys")
                _check_secret_key(key, field=f"{field}.secret_keys")
            keys = tuple(sorted(given.items()))
        else:
            given = dict(secret_keys) if secret_keys else {"key": _GCS_DEFAULT_KEY}
            if set(given) != {"key"}:
                raise DefinitionError(
                    f"model repository {text!r}: a gs:// secret holds one key file",
                    fix="give secret_keys={'key': 'credentials.json'} (the key in the Secret)",
                    field=f"{field}.secret_keys",
                )
            _check_secret_key(given["key"], field=f"{field}.secret_keys")
            keys = (("key", given["key"]),)
    elif secret_keys:
        raise DefinitionError(
            f"model repository {text!r}: secret_keys given without a secret",
            fix="name the Secret with secret='...'",
            field=f"{field}.secret_keys",
        )
    if region is not None and not re.match(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", region):
        raise DefinitionError(
            f"model repository {text!r}: region {region!r} is not an AWS region",
            fix="use e.g. 'us-east-1' or 'eu-west-3'",
            field=f"{field}.region",
        )
    return Repository(
        uri=normalized,
        kind=cast(RepositoryKind, scheme),
        location=location,
        path=path,
        secret=secret,
        secret_keys=keys,
        region=region,
    )


def _check_secret_key(key: object, *, field: str) -> None:
    if not isinstance(key, str) or not re.match(r"^[-._a-zA-Z0-9]+$", key) or len(key) > 253:
        raise DefinitionError(
            f"Secret key {key!r} is not a valid key",
            fix="use letters, digits, '-', '_' or '.'",
            field=field,
        )


@dataclass(frozen=True)
class ModelVersion:
    """A version folder; ``source`` is a local folder to copy into it (``None``: it is there)."""

    number: int
    source: str | None = None


# -- the model -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TritonModel:
    """A validated Triton model (build it with :func:`triton_model`)."""

    name: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    repository: Repository
    backend: str | None = None
    platform: str | None = None
    max_batch_size: int = 0
    dynamic_batching: DynamicBatching | None = None
    instance_groups: tuple[InstanceGroup, ...] = ()
    version_policy: VersionPolicy | None = None
    warmup: tuple[WarmupSample, ...] = ()
    versions: tuple[ModelVersion, ...] = ()
    parameters: tuple[tuple[str, str], ...] = ()
    default_model_filename: str | None = None

    @property
    def runtime(self) -> str:
        """The platform, or else the backend: what the model needs Triton to have."""
        return self.platform or self.backend or ""

    @property
    def needs_gpu(self) -> bool:
        """True when Triton must place it on a GPU: a KIND_GPU group or a GPU-only runtime."""
        return any(g.kind == "KIND_GPU" for g in self.instance_groups) or (
            self.runtime in GPU_ONLY_PLATFORMS
        )

    @property
    def batched(self) -> bool:
        """Whether requests carry a leading batch dimension (``max_batch_size > 0``)."""
        return self.max_batch_size > 0

    def input(self, name: str) -> Tensor:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> Tensor:
        return next(t for t in self.outputs if t.name == name)


def _tensors(specs: object, *, model: str, field: str) -> tuple[Tensor, ...]:
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise DefinitionError(
            _problem(model, f"{field} must be a non-empty list of tensors"),
            fix=f"declare {field}=[Tensor('name', 'TYPE_FP32', (5,))]",
            field=field,
        )
    tensors = tuple(_tensor(s, model=model, field=f"{field}[{i}]") for i, s in enumerate(specs))
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name in seen:
            raise DefinitionError(
                _problem(model, f"two {field} are named {tensor.name!r}"),
                fix="give every tensor its own name",
                field=f"{field}[{tensor.name}]",
            )
        seen.add(tensor.name)
    return tensors


def _runtime(
    model: str, backend: str | None, platform: str | None
) -> tuple[str | None, str | None]:
    if (backend is None) == (platform is None):
        raise DefinitionError(
            _problem(model, "give exactly one of backend and platform"),
            fix="e.g. backend='python' or platform='onnxruntime_onnx'",
            field="backend" if backend is not None else "platform",
        )
    if platform is not None and platform not in PLATFORMS:
        hint = (
            f"use backend={platform!r}"
            if platform in BACKENDS
            else f"use one of {', '.join(PLATFORMS)}, or a backend"
        )
        raise DefinitionError(
            _problem(model, f"platform {platform!r} is not a Triton platform"),
            fix=hint,
            field="platform",
        )
    if backend is not None:
        if backend in PLATFORMS:
            raise DefinitionError(
                _problem(model, f"{backend!r} is a platform, not a backend"),
                fix=f"use platform={backend!r}",
                field="backend",
            )
        if not isinstance(backend, str) or not _BACKEND_NAME.match(backend):
            raise DefinitionError(
                _problem(model, f"backend {backend!r} is not a backend name"),
                fix=f"use one of {', '.join(BACKENDS)} (or a custom backend's lower-case name)",
                field="backend",
            )
    return backend, platform


def _queue_policy(spec: object, *, model: str) -> QueuePolicy:
    field = "dynamic_batching.default_queue_policy"
    if isinstance(spec, Mapping):
        spec = QueuePolicy(**spec)
    if not isinstance(spec, QueuePolicy):
        raise DefinitionError(
            _problem(model, f"default_queue_policy {spec!r} is not a QueuePolicy"),
            fix="give QueuePolicy(timeout_action='REJECT', default_timeout_microseconds=..., ...)",
            field=field,
        )
    if spec.timeout_action not in get_args(TimeoutAction):
        raise DefinitionError(
            _problem(model, f"timeout_action {spec.timeout_action!r} is not REJECT or DELAY"),
            fix="use 'REJECT' (fail the request) or 'DELAY' (keep it, behind on-time requests)",
            field=f"{field}.timeout_action",
        )
    _whole(
        spec.default_timeout_microseconds,
        model=model,
        field=f"{field}.default_timeout_microseconds",
        what="default_timeout_microseconds",
        lowest=0,
        highest=MAX_QUEUE_DELAY_MICROSECONDS,
        fix="give microseconds from 0 (no timeout) to 60000000",
    )
    _whole(
        spec.max_queue_size,
        model=model,
        field=f"{field}.max_queue_size",
        what="max_queue_size",
        lowest=0,
        highest=1 << 31,
        fix="give 0 (unbounded) or a positive number of requests",
    )
    if not isinstance(spec.allow_timeout_override, bool):
        raise DefinitionError(
            _problem(model, "allow_timeout_override must be True or False"),
            fix="give a bool",
            field=f"{field}.allow_timeout_override",
        )
    return spec


def _dynamic_batching(spec: object, *, model: str, max_batch_size: int) -> DynamicBatching | None:
    if spec is None or spec is False:
        return None
    if spec is True:
        spec = DynamicBatching()
    elif isinstance(spec, Mapping):
        spec = DynamicBatching(**spec)
    if not isinstance(spec, DynamicBatching):
        raise DefinitionError(
            _problem(model, f"dynamic_batching {spec!r} is not a DynamicBatching"),
            fix="give True or DynamicBatching(preferred_batch_sizes=..., "
            "max_queue_delay_microseconds=...)",
            field="dynamic_batching",
        )
    if max_batch_size == 0:
        raise DefinitionError(
            _problem(model, "dynamic_batching needs max_batch_size > 0"),
            fix="set max_batch_size (e.g. 64), or drop dynamic_batching",
            field="dynamic_batching",
        )
    given: object = spec.preferred_batch_sizes
    sizes: Sequence[object] = (
        given if isinstance(given, Sequence) and not isinstance(given, str) else (given,)
    )
    checked_sizes = [
        _whole(
            size,
            model=model,
            field="dynamic_batching.preferred_batch_sizes",
            what="preferred batch size",
            lowest=1,
            highest=max_batch_size,
            fix=f"use sizes from 1 to max_batch_size ({max_batch_size})",
        )
        for size in sizes
    ]
    _whole(
        spec.max_queue_delay_microseconds,
        model=model,
        field="dynamic_batching.max_queue_delay_microseconds",
        what="max_queue_delay_microseconds",
        lowest=0,
        highest=MAX_QUEUE_DELAY_MICROSECONDS,
        fix="give microseconds, typically 100 to 10000 (at most 60000000)",
    )
    if not isinstance(spec.preserve_ordering, bool):
        raise DefinitionError(
            _problem(model, "preserve_ordering must be True or False"),
            fix="give a bool",
            field="dynamic_batching.preserve_ordering",
        )
    policy = (
        _queue_policy(spec.default_queue_policy, model=model)
        if spec.default_queue_policy is not None
        else None
    )
    return DynamicBatching(
        preferred_batch_sizes=tuple(sorted(set(checked_sizes))),
        max_queue_delay_microseconds=spec.max_queue_delay_microseconds,
        preserve_ordering=spec.preserve_ordering,
        default_queue_policy=policy,
    )


_KIND_ALIASES: Final = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}


def _instance_group(spec: object, *, model: str, index: int) -> InstanceGroup:
    field = f"instance_groups[{index}]"
    if isinstance(spec, Mapping):
        spec = InstanceGroup(**spec)
    if not isinstance(spec, InstanceGroup):
        raise DefinitionError(
            _problem(model, f"instance group {spec!r} is not an InstanceGroup"),
            fix="give InstanceGroup(count=1, kind='KIND_GPU')",
            field=field,
        )
    kind = _KIND_ALIASES.get(str(spec.kind).lower(), spec.kind)
    if kind not in get_args(InstanceKind):
        raise DefinitionError(
            _problem(model, f"instance group kind {spec.kind!r} is not KIND_GPU or KIND_CPU"),
            fix="use 'KIND_GPU', 'KIND_CPU' or 'KIND_AUTO'",
            field=f"{field}.kind",
        )
    _whole(
        spec.count,
        model=model,
        field=f"{field}.count",
        what="instance count",
        lowest=1,
        highest=MAX_INSTANCES,
    )
    gpus = tuple(spec.gpus)
    if gpus and kind != "KIND_GPU":
        raise DefinitionError(
            _problem(model, f"instance group {index} lists gpus {list(gpus)} but is {kind}"),
            fix="drop gpus, or use kind='KIND_GPU'",
            field=f"{field}.gpus",
        )
    for gpu in gpus:
        _whole(
            gpu,
            model=model,
            field=f"{field}.gpus",
            what="GPU index",
            lowest=0,
            highest=15,
            fix="use GPU indices from 0 to the pool's GPUs per pod - 1",
        )
    if len(set(gpus)) != len(gpus):
        raise DefinitionError(
            _problem(model, f"instance group {index} lists a GPU twice: {list(gpus)}"),
            fix="list each GPU index once (count sets copies per GPU)",
            field=f"{field}.gpus",
        )
    return InstanceGroup(count=spec.count, kind=cast(InstanceKind, kind), gpus=tuple(sorted(gpus)))


def _version_policy(spec: object, *, model: str) -> VersionPolicy | None:
    if spec is None:
        return None
    if spec == "all":
        return VersionPolicy.all()
    if spec == "latest":
        return VersionPolicy.latest()
    if not isinstance(spec, VersionPolicy):
        raise DefinitionError(
            _problem(model, f"version_policy {spec!r} is not a version policy"),
            fix="use 'all', 'latest', VersionPolicy.latest(n) or VersionPolicy.specific(1, 2)",
            field="version_policy",
        )
    if spec.kind == "latest":
        _whole(
            spec.num_versions,
            model=model,
            field="version_policy",
            what="latest num_versions",
            lowest=1,
            highest=1000,
        )
        return VersionPolicy.latest(spec.num_versions)
    if spec.kind == "all":
        return VersionPolicy.all()
    if spec.kind != "specific":
        raise DefinitionError(
            _problem(model, f"version_policy kind {spec.kind!r} is unknown"),
            fix="use VersionPolicy.latest(n), VersionPolicy.all() or VersionPolicy.specific(...)",
            field="version_policy",
        )
    if not spec.versions:
        raise DefinitionError(
            _problem(model, "a specific version_policy lists no versions"),
            fix="list them, e.g. VersionPolicy.specific(1, 2)",
            field="version_policy",
        )
    for version in spec.versions:
        _whole(
            version,
            model=model,
            field="version_policy",
            what="version",
            lowest=1,
            highest=(1 << 63) - 1,
            fix="versions are positive whole numbers (the version folder names)",
        )
    return VersionPolicy.specific(*sorted(set(spec.versions)))


def _versions(spec: object, *, model: str) -> tuple[ModelVersion, ...]:
    if spec is None:
        return ()
    pairs: list[tuple[object, object]]
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    elif isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        pairs = [(v, None) for v in spec]
    else:
        raise DefinitionError(
            _problem(model, f"versions {spec!r} is not a list or a dict"),
            fix="give [1, 2] (folders already in the repository) or "
            "{1: 'models/scorer/1'} (local folders to copy)",
            field="versions",
        )
    versions: list[ModelVersion] = []
    for number, source in pairs:
        _whole(
            number,
            model=model,
            field="versions",
            what="version",
            lowest=1,
            highest=(1 << 63) - 1,
            fix="version folders are named by positive whole numbers",
        )
        if source is not None and not isinstance(source, (str, os.PathLike)):
            raise DefinitionError(
                _problem(model, f"version {number} source {source!r} is not a folder path"),
                fix="give the local folder holding that version's files",
                field="versions",
            )
        versions.append(
            ModelVersion(
                number=cast(int, number), source=None if source is None else os.fspath(source)
            )
        )
    numbers = [v.number for v in versions]
    if len(set(numbers)) != len(numbers):
        raise DefinitionError(
            _problem(model, f"version listed twice in {numbers}"),
            fix="list each version once",
            field="versions",
        )
    return tuple(sorted(versions, key=lambda v: v.number))


def _warmups(
    spec: object, *, model: str, inputs: tuple[Tensor, ...], max_batch_size: int
) -> tuple[WarmupSample, ...]:
    if spec is None:
        return ()
    if isinstance(spec, str):
        spec = [Warmup(data=cast(WarmupData, spec))]
    elif isinstance(spec, Warmup):
        spec = [spec]
    if not isinstance(spec, Sequence):
        raise DefinitionError(
            _problem(model, f"warmup {spec!r} is not a Warmup"),
            fix="give 'zero', 'random' or Warmup(batch_size=1, data='zero')",
            field="warmup",
        )
    samples: list[WarmupSample] = []
    for index, item in enumerate(spec):
        field = f"warmup[{index}]"
        if not isinstance(item, Warmup):
            raise DefinitionError(
                _problem(model, f"warmup {item!r} is not a Warmup"),
                fix="give 'zero', 'random' or Warmup(batch_size=1, data='zero')",
                field=field,
            )
        if item.data not in get_args(WarmupData):
            raise DefinitionError(
                _problem(model, f"warmup data {item.data!r} is not 'zero' or 'random'"),
                fix="use 'zero' or 'random'",
                field=f"{field}.data",
            )
        _whole(
            item.batch_size,
            model=model,
            field=f"{field}.batch_size",
            what="warm-up batch size",
            lowest=1,
            highest=max(max_batch_size, 1),
            fix="use 1 to max_batch_size (1 for a model without batching)",
        )
        _whole(
            item.count,
            model=model,
            field=f"{field}.count",
            what="warm-up count",
            lowest=1,
            highest=1000,
        )
        overrides = dict(item.dims or {})
        unknown = sorted(set(overrides) - {t.name for t in inputs})
        if unknown:
            raise DefinitionError(
                _problem(
                    model, f"warmup dims name unknown input(s) {', '.join(map(repr, unknown))}"
                ),
                fix=f"use the model's inputs: {', '.join(t.name for t in inputs)}",
                field=f"{field}.dims",
            )
        sample_inputs: list[WarmupInput] = []
        for tensor in inputs:
            dims = tuple(overrides.get(tensor.name, tensor.dims))
            ok = len(dims) == len(tensor.dims) and all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 1 and (t == -1 or d == t)
                for d, t in zip(dims, tensor.dims, strict=False)
            )
            if not ok:
                raise DefinitionError(
                    _problem(
                        model,
                        f"warm-up sample of input {tensor.name!r} needs concrete dims matching "
                        f"{list(tensor.dims)}, got {list(dims)}",
                    ),
                    fix=f"give Warmup(dims={{{tensor.name!r}: [...]}}) with a size for every -1",
                    field=f"{field}.dims",
                )
            sample_inputs.append(WarmupInput(tensor.name, tensor.data_type, dims, item.data))
        samples.append(
            WarmupSample(
                name=f"{item.data}-batch-{item.batch_size}",
                batch_size=item.batch_size,
                count=item.count,
                inputs=tuple(sample_inputs),
            )
        )
    names = [s.name for s in samples]
    if len(set(names)) != len(names):
        raise DefinitionError(
            _problem(model, f"two warm-up samples are the same ({', '.join(names)})"),
            fix="give each warm-up a different batch size or data",
            field="warmup",
        )
    return tuple(samples)


def _parameters(spec: Mapping[str, object] | None, *, model: str) -> tuple[tuple[str, str], ...]:
    if not spec:
        return ()
    pairs: list[tuple[str, str]] = []
    for key, value in spec.items():
        if not isinstance(key, str) or not _PARAMETER_KEY.match(key):
            raise DefinitionError(
                _problem(model, f"parameter name {key!r} is not valid"),
                fix="use letters, digits, '_', '.' or '-'",
                field="parameters",
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (str, int, float)) and not (
            isinstance(value, float) and not math.isfinite(value)
        ):
            text = str(value)
        else:
            raise DefinitionError(
                _problem(model, f"parameter {key!r} value {value!r} is not a string or number"),
                fix="give a string (Triton parameters are string_value)",
                field="parameters",
            )
        pairs.append((key, text))
    return tuple(sorted(pairs))


def triton_model(
    name: str,
    *,
    inputs: Sequence[Tensor | tuple[str, str, Sequence[int]] | Mapping[str, Any]],
    outputs: Sequence[Tensor | tuple[str, str, Sequence[int]] | Mapping[str, Any]],
    repository: str | os.PathLike[str] | Repository,
    backend: str | None = None,
    platform: str | None = None,
    max_batch_size: int = 0,
    dynamic_batching: DynamicBatching | bool | Mapping[str, Any] | None = None,
    instance_groups: Sequence[InstanceGroup | Mapping[str, Any]] = (),
    version_policy: VersionPolicy | Literal["all", "latest"] | None = None,
    warmup: Warmup | Sequence[Warmup] | WarmupData | None = None,
    versions: Mapping[int, str | os.PathLike[str]] | Sequence[int] | None = None,
    parameters: Mapping[str, str | int | float | bool] | None = None,
    default_model_filename: str | None = None,
) -> TritonModel:
    """Declare a Triton model; every rule is checked here, so a :class:`TritonModel` is valid.

    Args:
        name: DNS-1123 label; also the folder in the model repository and the URL path segment.
        inputs, outputs: tensors, dims without the batch dimension (``-1`` = variable).
        repository: where the model repository lives (see :func:`model_repository`).
        backend / platform: exactly one, e.g. ``backend="python"`` or
            ``platform="onnxruntime_onnx"``.
        max_batch_size: 0 for a model without a batch dimension.
        dynamic_batching: ``True`` for Triton's defaults, or a :class:`DynamicBatching`.
        instance_groups: copies of the model on GPUs or CPU.
        version_policy: ``"latest"``, ``"all"`` or a :class:`VersionPolicy`.
        warmup: ``"zero"``, ``"random"`` or :class:`Warmup` samples.
        versions: version folders: ``[1, 2]`` already in the repository, or ``{1: "local/dir"}``
            to copy from local folders when the repository is written.
        parameters: Triton ``parameters`` (string values), e.g. for a Python backend's
            ``EXECUTION_ENV_PATH``.
    """
    check_dns1123_label(name, field="name", what="model name")
    backend, platform = _runtime(name, backend, platform)
    batch = _whole(
        max_batch_size,
        model=name,
        field="max_batch_size",
        what="max_batch_size",
        lowest=0,
        highest=MAX_BATCH_SIZE,
        fix=f"use 0 (no batch dimension) up to {MAX_BATCH_SIZE}",
    )
    ins = _tensors(inputs, model=name, field="inputs")
    outs = _tensors(outputs, model=name, field="outputs")
    clash = sorted({t.name for t in ins} & {t.name for t in outs})
    if clash:
        raise DefinitionError(
            _problem(model=name, text=f"{clash[0]!r} is both an input and an output"),
            fix="give inputs and outputs different names",
            field=f"outputs[{clash[0]}]",
        )
    repo = model_repository(repository)
    groups = tuple(
        _instance_group(g, model=name, index=i) for i, g in enumerate(instance_groups or ())
    )
    policy = _version_policy(version_policy, model=name)
    declared = _versions(versions, model=name)
    if policy is not None and policy.kind == "specific" and declared:
        missing = sorted(set(policy.versions) - {v.number for v in declared})
        if missing:
            raise DefinitionError(
                _problem(name, f"version_policy serves version(s) {missing} that versions lacks"),
                fix="add those version folders to versions, or serve the declared ones",
                field="version_policy",
            )
    if default_model_filename is not None and (
        not isinstance(default_model_filename, str) or not _PATH_PART.match(default_model_filename)
    ):
        raise DefinitionError(
            _problem(name, f"default_model_filename {default_model_filename!r} is not a file name"),
            fix="give a file name inside the version folder, e.g. 'model.onnx'",
            field="default_model_filename",
        )
    if (platform or backend) in GPU_ONLY_PLATFORMS and any(g.kind == "KIND_CPU" for g in groups):
        raise DefinitionError(
            _problem(name, f"{platform or backend} runs only on GPUs, not in a KIND_CPU group"),
            fix="use kind='KIND_GPU'",
            field="instance_groups",
        )
    return TritonModel(
        name=name,
        inputs=ins,
        outputs=outs,
        repository=repo,
        backend=backend,
        platform=platform,
        max_batch_size=batch,
        dynamic_batching=_dynamic_batching(dynamic_batching, model=name, max_batch_size=batch),
        instance_groups=groups,
        version_policy=policy,
        warmup=_warmups(warmup, model=name, inputs=ins, max_batch_size=batch),
        versions=declared,
        parameters=_parameters(parameters, model=name),
        default_model_filename=default_model_filename,
    )


def cpu_variant(model: TritonModel) -> TritonModel:
    """The same model with its GPU instance groups on CPU: for local runs on a machine without
    GPUs (``rtflow run --local``, the tests). GPU-only runtimes (TensorRT) cannot have one."""
    if model.runtime in GPU_ONLY_PLATFORMS:
        raise DefinitionError(
            _problem(
                model.name, f"{model.runtime} runs only on GPUs, so it cannot run locally on CPU"
            ),
            fix="run it on a GPU pool, or export the model to ONNX for local runs",
            field="platform" if model.platform else "backend",
        )
    groups = tuple(
        InstanceGroup(count=g.count, kind="KIND_CPU") if g.kind != "KIND_CPU" else g
        for g in model.instance_groups
    )
    return replace(model, instance_groups=groups)
