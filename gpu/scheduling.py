"""How Triton schedules a model's requests: queue policy, dynamic batching, instance groups,
version policy and warm-up.

These are the parts of Triton's ``model_config.proto`` that say how requests reach copies of a
model, not what the model is: each is a frozen dataclass a declaration passes to
:func:`rtflow.gpu.models.triton_model`, and a check here that it calls. Field names and units
follow Triton's (microseconds, ``KIND_GPU``), so a reader of its documentation finds them again;
:mod:`rtflow.gpu.config` renders them into ``config.pbtxt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast, get_args

from rtflow.errors import DefinitionError
from rtflow.gpu.model_checks import _problem, _whole
from rtflow.gpu.tensors import Tensor

__all__ = [
    "MAX_QUEUE_DELAY_MICROSECONDS",
    "DynamicBatching",
    "InstanceGroup",
    "QueuePolicy",
    "VersionPolicy",
    "Warmup",
    "WarmupInput",
    "WarmupSample",
]

MAX_QUEUE_DELAY_MICROSECONDS: Final = 60_000_000
MAX_INSTANCES: Final = 64

InstanceKind = Literal["KIND_GPU", "KIND_CPU", "KIND_AUTO", "KIND_MODEL"]
TimeoutAction = Literal["REJECT", "DELAY"]
WarmupData = Literal["zero", "random"]


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


_KIND_ALIASES: Final = {
    "gpu": "KIND_GPU",
    "cpu": "KIND_CPU",
    "auto": "KIND_AUTO",
    "model": "KIND_MODEL",
}


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
            _problem(
                model,
                f"instance group kind {spec.kind!r} is not KIND_GPU, KIND_CPU, KIND_AUTO or "
                "KIND_MODEL",
            ),
            fix="use 'KIND_GPU', 'KIND_CPU', 'KIND_AUTO' or 'KIND_MODEL'",
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
