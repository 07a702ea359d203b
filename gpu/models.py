"""Triton models: the declaration, checked once.

:func:`triton_model` checks a declaration once and returns a frozen :class:`TritonModel`; every
later step (``config.pbtxt`` rendering in :mod:`rtflow.gpu.config`, serving manifests, KServe v2
request bodies) trusts it. Field names follow Triton's ``model_config.proto`` so that a reader of
Triton's documentation finds them again: ``max_batch_size``, ``dynamic_batching``,
``instance_group``, ``version_policy``, ``model_warmup``.

What a model is made of has a module each: its tensors (:mod:`rtflow.gpu.tensors`), how Triton
schedules it (:mod:`rtflow.gpu.scheduling`) and where its repository lives
(:mod:`rtflow.gpu.repository`). Their public names stay importable from here.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal

from rtflow.canary_policy import Canary, canary_version_policy
from rtflow.errors import DefinitionError
from rtflow.gpu.model_checks import _problem, _whole
from rtflow.gpu.repository import (
    _PATH_PART,
    ModelVersion,
    Repository,
    _versions,
    model_repository,
)
from rtflow.gpu.response_cache import check_client_cache, check_response_cache
from rtflow.gpu.scheduling import (
    MAX_QUEUE_DELAY_MICROSECONDS,
    DynamicBatching,
    InstanceGroup,
    QueuePolicy,
    VersionPolicy,
    Warmup,
    WarmupData,
    WarmupInput,
    WarmupSample,
    _dynamic_batching,
    _instance_group,
    _version_policy,
    _warmups,
)
from rtflow.gpu.tensors import DATA_TYPES, DataType, Tensor, _tensors, data_type
from rtflow.names import check_dns1123_label

if TYPE_CHECKING:
    from rtflow.gpu.ensemble import EnsembleStep

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

_BACKEND_NAME: Final = re.compile(r"^[a-z][a-z0-9_]*$")
_PARAMETER_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")


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
    decoupled: bool = False
    """Triton's ``model_transaction_policy { decoupled: true }``: any number of responses per
    request (a streaming LLM); set by :mod:`rtflow.gpu.llm`."""
    gpus_per_instance: int = 0
    """GPUs one instance of the model spans (an LLM engine's tensor x pipeline parallelism),
    placed by the backend itself; 0 when Triton's instance groups say where it runs."""
    files: tuple[tuple[str, str], ...] = ()
    """Generated files in each version folder, ``(name, text)`` (the vLLM backend's
    ``model.json``), written with ``config.pbtxt``."""
    response_cache: bool = False
    """Triton's ``response_cache { enable: true }`` (:mod:`rtflow.gpu.response_cache`)."""
    client_cache: int = 0
    """Answers each stream worker keeps for repeated requests (0: none; see
    :mod:`rtflow.stages.stream.answer_cache`)."""
    canary: Canary | None = None
    """How a new version is rolled out (:mod:`rtflow.canary_policy`); ``version_policy`` is
    then the stable version alone."""
    ensemble_steps: tuple[EnsembleStep, ...] = ()
    """An ensemble's steps (``platform="ensemble"``), checked by
    :func:`rtflow.gpu.ensemble.triton_ensemble`."""

    @property
    def runtime(self) -> str:
        """The platform, or else the backend: what the model needs Triton to have."""
        return self.platform or self.backend or ""

    @property
    def needs_gpu(self) -> bool:
        """True when Triton must place it on a GPU: a KIND_GPU group or a GPU-only runtime."""
        return (
            any(g.kind == "KIND_GPU" for g in self.instance_groups)
            or self.runtime in GPU_ONLY_PLATFORMS
            or self.gpus_per_instance > 0
            or any(step.model.needs_gpu for step in self.ensemble_steps)
        )

    @property
    def batched(self) -> bool:
        """Whether requests carry a leading batch dimension (``max_batch_size > 0``)."""
        return self.max_batch_size > 0

    def input(self, name: str) -> Tensor:
        return next(t for t in self.inputs if t.name == name)

    def output(self, name: str) -> Tensor:
        return next(t for t in self.outputs if t.name == name)


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
    decoupled: bool = False,
    response_cache: bool = False,
    client_cache: int = 0,
    canary: Canary | None = None,
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
        decoupled: any number of responses per request (a model that streams tokens; see
            :mod:`rtflow.gpu.llm` for the vLLM and TensorRT-LLM backends).
        response_cache: Triton answers a repeated request (same inputs) from its cache
            (:mod:`rtflow.gpu.response_cache`; refused for decoupled models).
        client_cache: how many answers each stream worker keeps for repeated requests
            (an LRU keyed by the input tensors' bytes; 0, the default, keeps none).
        canary: roll new versions out by a canary (``rtflow.canary(...)``,
            :mod:`rtflow.canary_policy`).
    """
    if not isinstance(decoupled, bool):
        raise DefinitionError(
            _problem(name, f"decoupled {decoupled!r} is not a bool"),
            fix="give True for a model that streams responses, else False",
            field="decoupled",
        )
    check_dns1123_label(name, field="name", what="model name")
    cached = check_response_cache(name, response_cache, decoupled=decoupled)
    kept = check_client_cache(name, client_cache, decoupled=decoupled)
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
    if canary is not None:
        policy = canary_version_policy(name, canary, declared, policy, decoupled=decoupled)
    if default_model_filename is not None and (
        not isinstance(default_model_filename, str) or not _PATH_PART.match(default_model_filename)
    ):
        raise DefinitionError(
            _problem(name, f"default_model_filename {default_model_filename!r} is not a file name"),
            fix="give a file name inside the version folder, e.g. 'model.onnx'",
            field="default_model_filename",
        )
    # tensorrtllm's own convention is one KIND_CPU instance: the backend places the engine on
    # its GPUs itself (tensorrtllm_backend's all_models/.../tensorrt_llm/config.pbtxt)
    if (platform or backend) in GPU_ONLY_PLATFORMS - {"tensorrtllm"} and any(
        g.kind == "KIND_CPU" for g in groups
    ):
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
        decoupled=decoupled,
        response_cache=cached,
        client_cache=kept,
        canary=canary,
    )


def cpu_variant(model: TritonModel) -> TritonModel:
    """The same model with its GPU instance groups on CPU: for local runs on a machine without
    GPUs (``rtflow run --local``, the tests). GPU-only runtimes (TensorRT) cannot have one."""
    if model.runtime in GPU_ONLY_PLATFORMS or model.gpus_per_instance > 0:
        raise DefinitionError(
            _problem(
                model.name, f"{model.runtime} runs only on GPUs, so it cannot run locally on CPU"
            ),
            fix="run against a Triton on GPUs (rtflow run --local --triton-url URL)"
            if model.gpus_per_instance > 0
            else "run it on a GPU pool, or export the model to ONNX for local runs",
            field="platform" if model.platform else "backend",
        )
    groups = tuple(
        InstanceGroup(count=g.count, kind="KIND_CPU") if g.kind != "KIND_CPU" else g
        for g in model.instance_groups
    )
    return replace(model, instance_groups=groups)
