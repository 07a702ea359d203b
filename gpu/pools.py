"""GPU node pools: where a GPU pod may run, and what it asks the scheduler for.

A pool is declared once (:func:`gpu_pool`) and validated then; :func:`placement` turns it into the
pod pieces any generator needs: ``nodeSelector``, ``tolerations``, ``affinity`` and the GPU
resource name and count for the container's limits.

The labels are the ones NVIDIA's GPU Feature Discovery (GFD) and the clouds put on GPU nodes:

* ``nvidia.com/gpu.product`` (GFD): the product, e.g. ``NVIDIA-A100-SXM4-80GB``. With the MIG
  *single* strategy GFD rewrites it to ``<product>-MIG-<profile>``.
* ``nvidia.com/mig.config`` (NVIDIA MIG manager): the MIG layout applied to the node, e.g.
  ``all-1g.10gb``.
* GKE ``cloud.google.com/gke-accelerator`` (+ ``cloud.google.com/gke-gpu-partition-size`` for
  MIG), EKS with Karpenter ``karpenter.k8s.aws/instance-gpu-name``, AKS
  ``kubernetes.azure.com/accelerator``.

MIG strategies (NVIDIA device plugin): *single* advertises every MIG slice of a node as
``nvidia.com/gpu`` (all slices alike, so the node labels say which profile); *mixed* advertises one
resource per profile, ``nvidia.com/mig-<profile>`` (e.g. ``nvidia.com/mig-1g.10gb``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast, get_args

from hera.workflows import models as m

from rtflow.errors import DefinitionError
from rtflow.names import check_annotation_key, check_dns1123_label, check_label

__all__ = [
    "AKS_ACCELERATOR_LABEL",
    "EKS_GPU_NAME_LABEL",
    "GKE_ACCELERATOR_LABEL",
    "GKE_PARTITION_LABEL",
    "GPU_RESOURCE",
    "MAX_GPUS_PER_POD",
    "MIG_CONFIG_LABEL",
    "MIG_PROFILES",
    "PRODUCT_LABEL",
    "Cloud",
    "GpuPool",
    "Mig",
    "MigStrategy",
    "Placement",
    "Toleration",
    "gpu_pool",
    "mig_profiles_for",
    "placement",
    "toleration",
]

PRODUCT_LABEL: Final = "nvidia.com/gpu.product"
MIG_CONFIG_LABEL: Final = "nvidia.com/mig.config"
GPU_RESOURCE: Final = "nvidia.com/gpu"
GKE_ACCELERATOR_LABEL: Final = "cloud.google.com/gke-accelerator"
GKE_PARTITION_LABEL: Final = "cloud.google.com/gke-gpu-partition-size"
EKS_GPU_NAME_LABEL: Final = "karpenter.k8s.aws/instance-gpu-name"
AKS_ACCELERATOR_LABEL: Final = "kubernetes.azure.com/accelerator"
MAX_GPUS_PER_POD: Final = 16
"""The most GPUs (or MIG slices) one pod may ask for: 8-GPU nodes are the common maximum, 16
leaves room for the largest and catches a count typed in the wrong unit."""

MigStrategy = Literal["single", "mixed"]
Cloud = Literal["gke", "eks", "aks"]
Effect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]
Operator = Literal["Exists", "Equal"]

_CLOUD_LABELS: Final[dict[str, str]] = {
    "gke": GKE_ACCELERATOR_LABEL,
    "eks": EKS_GPU_NAME_LABEL,
    "aks": AKS_ACCELERATOR_LABEL,
}
_CLOUD_EXAMPLES: Final[dict[str, str]] = {
    "gke": "'nvidia-l4' or 'nvidia-a100-80gb'",
    "eks": "'a100', 'l4' or 'a10g'",
    "aks": "'nvidia'",
}

# The MIG profiles of each MIG-capable GPU family (NVIDIA MIG user guide), matched against the
# GFD product label. Profiles with media extensions (``+me``) are left out: their resource names
# are not valid Kubernetes resource names.
_A100_40: Final = ("1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")
_X100_80: Final = ("1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb")
_H100_94: Final = ("1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb")
_H200_141: Final = ("1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb")
_A30: Final = ("1g.6gb", "2g.12gb", "4g.24gb")
_MIG_FAMILIES: Final[tuple[tuple[re.Pattern[str], tuple[str, ...]], ...]] = (
    (re.compile(r"A30(\b|[-_ ])", re.IGNORECASE), _A30),
    (re.compile(r"A100.*80GB", re.IGNORECASE), _X100_80),
    (re.compile(r"A100", re.IGNORECASE), _A100_40),
    (re.compile(r"H100.*(94GB|NVL)", re.IGNORECASE), _H100_94),
    (re.compile(r"H100", re.IGNORECASE), _X100_80),
    (re.compile(r"H200", re.IGNORECASE), _H200_141),
)
# MIG-capable, but with profiles this table does not list: only the profile's form is checked.
_MIG_CAPABLE_UNLISTED: Final = re.compile(r"(GH200|GB200|B200|B100|H20(\b|[-_ ]))", re.IGNORECASE)
MIG_PROFILES: Final[tuple[str, ...]] = tuple(
    sorted(
        {p for _, profiles in _MIG_FAMILIES for p in profiles},
        key=lambda p: (int(p.split("g.")[0]), int(p.split(".")[1].removesuffix("gb"))),
    )
)
"""Every MIG profile rtflow knows, across A30, A100, H100 and H200."""
_PROFILE_FORM: Final = re.compile(r"^[1-7]g\.[0-9]+gb$")


def mig_profiles_for(product: str | None) -> tuple[str, ...] | None:
    """The MIG profiles of a GFD product, ``()`` when it has no MIG, ``None`` when unknown."""
    if product is None:
        return None
    for pattern, profiles in _MIG_FAMILIES:
        if pattern.search(product):
            return profiles
    if _MIG_CAPABLE_UNLISTED.search(product):
        return None
    return ()


@dataclass(frozen=True)
class Toleration:
    """A core/v1 toleration. ``key=None`` with ``Exists`` tolerates every taint."""

    key: str | None
    operator: Operator = "Exists"
    value: str | None = None
    effect: Effect | None = "NoSchedule"
    toleration_seconds: int | None = None

    def to_model(self) -> m.Toleration:
        return m.Toleration(
            key=self.key,
            operator=self.operator,
            value=self.value,
            effect=self.effect,
            toleration_seconds=self.toleration_seconds,
        )


DEFAULT_TOLERATIONS: Final = (Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),)


@dataclass(frozen=True)
class Mig:
    profile: str
    strategy: MigStrategy

    @property
    def resource(self) -> str:
        """The extended resource a pod requests: per profile with *mixed*, plain with *single*."""
        return f"nvidia.com/mig-{self.profile}" if self.strategy == "mixed" else GPU_RESOURCE


@dataclass(frozen=True)
class GpuPool:
    """A validated GPU node pool (build it with :func:`gpu_pool`).

    ``node_selector`` holds only the user's extra selectors and ``node_affinity`` the user's
    affinity as canonical JSON (camelCase, sorted keys): both hashable and deterministic;
    :func:`placement` assembles the full pod pieces.
    """

    name: str
    product: str | None = None
    gpus_per_pod: int = 1
    mig: Mig | None = None
    cloud: Cloud | None = None
    accelerator: str | None = None
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = DEFAULT_TOLERATIONS
    node_affinity: str | None = None

    @property
    def gpu_resource(self) -> str:
        return self.mig.resource if self.mig is not None else GPU_RESOURCE


@dataclass(frozen=True)
class Placement:
    """What a pod needs to land on a pool and get its GPUs."""

    node_selector: Mapping[str, str]
    tolerations: tuple[m.Toleration, ...]
    affinity: m.Affinity | None
    gpu_resource: str
    gpu_count: int

    def gpu_limits(self) -> dict[str, m.Quantity]:
        """The container's GPU request/limit (extended resources: request equals limit)."""
        return {self.gpu_resource: m.Quantity(str(self.gpu_count))}

    def pod_spec_fields(self) -> dict[str, Any]:
        """The pieces as plain, camelCase pod-spec fields (for dict-built manifests)."""
        fields: dict[str, Any] = {}
        if self.node_selector:
            fields["nodeSelector"] = dict(self.node_selector)
        if self.tolerations:
            fields["tolerations"] = [_dump(t) for t in self.tolerations]
        if self.affinity is not None:
            fields["affinity"] = _dump(self.affinity)
        return fields


def _dump(model: Any) -> Any:
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def _problem(pool: str, text: str) -> str:
    return f"GPU pool {pool!r}: {text}"


_TAINT: Final = re.compile(r"^(?P<key>[^=:]+)(=(?P<value>[^:]*))?(:(?P<effect>[A-Za-z]+))?$")


def toleration(
    spec: str | Toleration | Mapping[str, Any], *, field: str = "tolerations"
) -> Toleration:
    """A toleration from kubectl's taint syntax (``key[=value][:Effect]``), a dict or as is.

    ``"nvidia.com/gpu:NoSchedule"`` tolerates the taint whatever its value (``Exists``);
    ``"dedicated=triton:NoSchedule"`` only that value (``Equal``).
    """
    if isinstance(spec, Toleration):
        result = spec
    elif isinstance(spec, str):
        match = _TAINT.match(spec.strip())
        if match is None:
            raise DefinitionError(
                f"toleration {spec!r} is not in kubectl's taint form",
                fix="write 'key:Effect' or 'key=value:Effect', e.g. 'nvidia.com/gpu:NoSchedule'",
                field=field,
            )
        value = match["value"]
        result = Toleration(
            key=match["key"],
            operator="Equal" if value is not None else "Exists",
            value=value,
            effect=cast(Effect | None, match["effect"]),
        )
    elif isinstance(spec, Mapping):
        known = {"key", "operator", "value", "effect", "tolerationSeconds"}
        unknown = sorted(set(spec) - known)
        if unknown:
            raise DefinitionError(
                f"toleration has unknown field(s) {', '.join(map(repr, unknown))}",
                fix=f"use only {', '.join(sorted(known))}",
                field=field,
            )
        result = Toleration(
            key=spec.get("key"),
            operator=spec.get("operator", "Equal" if spec.get("value") else "Exists"),
            value=spec.get("value"),
            effect=spec.get("effect"),
            toleration_seconds=spec.get("tolerationSeconds"),
        )
    else:
        raise DefinitionError(
            "toleration must be a string, dict or rtflow.gpu.Toleration, "
            f"not {type(spec).__name__}",
            fix="write e.g. 'nvidia.com/gpu:NoSchedule'",
            field=field,
        )
    return _check_toleration(result, field=field)


def _check_toleration(tol: Toleration, *, field: str) -> Toleration:
    if tol.operator not in get_args(Operator):
        raise DefinitionError(
            f"toleration operator {tol.operator!r} is not 'Exists' or 'Equal'",
            fix="use 'Exists' (any value) or 'Equal' (with a value)",
            field=field,
        )
    if tol.effect is not None and tol.effect not in get_args(Effect):
        raise DefinitionError(
            f"toleration effect {tol.effect!r} is not a taint effect",
            fix="use 'NoSchedule', 'PreferNoSchedule' or 'NoExecute'",
            field=field,
        )
    if tol.key is None:
        if tol.operator != "Exists":
            raise DefinitionError(
                "a toleration without a key must use operator 'Exists'",
                fix="give a key, or use operator 'Exists' to tolerate every taint",
                field=field,
            )
    else:
        check_annotation_key(tol.key, field=field)
    if tol.operator == "Exists" and tol.value:
        raise DefinitionError(
            f"toleration {tol.key!r} has operator 'Exists' and a value {tol.value!r}",
            fix="drop the value, or use operator 'Equal'",
            field=field,
        )
    if tol.value:
        check_label(tol.key or "key", tol.value, field=field)
    if tol.toleration_seconds is not None:
        if tol.effect != "NoExecute":
            raise DefinitionError(
                "toleration_seconds only applies to the 'NoExecute' effect",
                fix="drop toleration_seconds, or use effect 'NoExecute'",
                field=field,
            )
        if isinstance(tol.toleration_seconds, bool) or not isinstance(tol.toleration_seconds, int):
            raise DefinitionError(
                f"toleration_seconds {tol.toleration_seconds!r} is not a whole number",
                fix="give seconds as an int, e.g. 300",
                field=field,
            )
    return tol


def _check_count(value: object, *, pool: str, field: str, lowest: int, highest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise DefinitionError(
            _problem(pool, f"{field} {value!r} is out of range"),
            fix=f"use a whole number from {lowest} to {highest}",
            field=field,
        )
    return value


def _check_mig(
    pool: str,
    product: str | None,
    profile: str | None,
    strategy: str | None,
) -> Mig | None:
    if profile is None and strategy is None:
        return None
    if profile is None:
        raise DefinitionError(
            _problem(pool, f"mig_strategy {strategy!r} is set without a MIG profile"),
            fix="add mig_profile, e.g. '1g.10gb', or drop mig_strategy",
            field="mig_strategy",
        )
    if not isinstance(profile, str) or not _PROFILE_FORM.match(profile):
        raise DefinitionError(
            _problem(pool, f"MIG profile {profile!r} is not of the form '<slices>g.<memory>gb'"),
            fix=f"use one of {', '.join(MIG_PROFILES)}",
            field="mig_profile",
        )
    known = mig_profiles_for(product)
    if known == ():
        raise DefinitionError(
            _problem(
                pool, f"GPU product {product!r} has no MIG, so MIG profile {profile!r} cannot apply"
            ),
            fix="drop mig_profile, or use a pool of MIG-capable GPUs (A30, A100, H100, H200)",
            field="mig_profile",
        )
    if strategy is None:
        raise DefinitionError(
            _problem(pool, f"MIG profile {profile!r} is set but the pool has no MIG strategy"),
            fix="set mig_strategy='single' (MIG slices as nvidia.com/gpu) or 'mixed' "
            "(nvidia.com/mig-<profile> resources), as the NVIDIA device plugin is configured",
            field="mig_strategy",
        )
    if strategy not in get_args(MigStrategy):
        raise DefinitionError(
            _problem(pool, f"mig_strategy {strategy!r} is not a MIG strategy"),
            fix="use 'single' or 'mixed', as the NVIDIA device plugin is configured",
            field="mig_strategy",
        )
    if known is not None and profile not in known:
        raise DefinitionError(
            _problem(pool, f"MIG profile {profile!r} does not exist on {product!r}"),
            fix=f"use one of {', '.join(known)}",
            field="mig_profile",
        )
    if known is None and product is None and profile not in MIG_PROFILES:
        offer = f"nvidia.com/mig-{profile}" if strategy == "mixed" else f"{profile} slices"
        raise DefinitionError(
            _problem(
                pool, f"MIG profile {profile!r} is not a known profile, so no node offers {offer}"
            ),
            fix=f"use one of {', '.join(MIG_PROFILES)}, or set the pool's product",
            field="mig_profile",
        )
    return Mig(profile=profile, strategy=cast(MigStrategy, strategy))


def _canonical_affinity(pool: str, affinity: Mapping[str, Any] | m.NodeAffinity) -> str:
    """Check a node affinity strictly (hera's models drop unknown fields silently)."""
    if isinstance(affinity, m.NodeAffinity):
        return json.dumps(_dump(affinity), sort_keys=True, separators=(",", ":"))
    if not isinstance(affinity, Mapping):
        raise DefinitionError(
            _problem(pool, f"node_affinity must be a dict, not {type(affinity).__name__}"),
            fix="give a core/v1 NodeAffinity in camelCase, "
            "e.g. {'requiredDuringSchedulingIgnoredDuringExecution': {...}}",
            field="node_affinity",
        )
    try:
        parsed = m.NodeAffinity.model_validate(dict(affinity))
    except ValueError as exc:
        first = str(exc).splitlines()
        detail = first[1] if len(first) > 1 else str(exc)
        raise DefinitionError(
            _problem(pool, f"node_affinity is not a core/v1 NodeAffinity ({detail.strip()})"),
            fix="write it as in a pod spec, in camelCase",
            field="node_affinity",
        ) from None
    dumped = _dump(parsed)
    original = json.loads(json.dumps(dict(affinity)))
    if dumped != original:
        raise DefinitionError(
            _problem(pool, "node_affinity has fields a core/v1 NodeAffinity does not have"),
            fix="use the camelCase names of a pod spec "
            "(requiredDuringSchedulingIgnoredDuringExecution, nodeSelectorTerms, "
            "matchExpressions, ...)",
            field="node_affinity",
        )
    if not dumped:
        raise DefinitionError(
            _problem(pool, "node_affinity is empty"),
            fix="drop it, or give required/preferred scheduling terms",
            field="node_affinity",
        )
    return json.dumps(dumped, sort_keys=True, separators=(",", ":"))


def gpu_pool(
    name: str,
    *,
    product: str | None = None,
    gpus_per_pod: int = 1,
    mig_profile: str | None = None,
    mig_strategy: MigStrategy | None = None,
    cloud: Cloud | None = None,
    accelerator: str | None = None,
    node_selector: Mapping[str, str] | None = None,
    tolerations: Sequence[str | Toleration | Mapping[str, Any]] | None = None,
    node_affinity: Mapping[str, Any] | m.NodeAffinity | None = None,
) -> GpuPool:
    """Declare a GPU node pool; every rule is checked here, so a :class:`GpuPool` is valid.

    Args:
        name: DNS-1123 label, e.g. ``"a100"``.
        product: the GFD ``nvidia.com/gpu.product`` value, e.g. ``"NVIDIA-A100-SXM4-80GB"``.
        gpus_per_pod: GPUs (or MIG slices) each pod requests, 1 to 16.
        mig_profile: e.g. ``"1g.10gb"``; needs ``mig_strategy``.
        mig_strategy: ``"single"`` or ``"mixed"``, as the NVIDIA device plugin is configured.
        cloud: ``"gke"``, ``"eks"`` (Karpenter) or ``"aks"``: adds that cloud's GPU node label.
        accelerator: the value of the cloud's label (GKE ``nvidia-l4``, EKS ``l4``; AKS defaults
            to ``nvidia``).
        node_selector: extra node labels the pool's nodes carry.
        tolerations: replaces the default (``nvidia.com/gpu`` Exists NoSchedule); strings in
            kubectl's taint form, dicts or :class:`Toleration`.
        node_affinity: a core/v1 NodeAffinity (camelCase dict), the escape hatch.
    """
    check_dns1123_label(name, field="name", what="GPU pool name")
    if product is not None:
        if not isinstance(product, str):
            raise DefinitionError(
                _problem(name, f"product must be a string, not {type(product).__name__}"),
                fix="give the nvidia.com/gpu.product label, e.g. 'NVIDIA-L4'",
                field="product",
            )
        check_label(PRODUCT_LABEL, product, field="product")
    gpus = _check_count(gpus_per_pod, pool=name, field="gpus_per_pod", lowest=1, highest=16)
    mig = _check_mig(name, product, mig_profile, mig_strategy)

    if cloud is not None and cloud not in _CLOUD_LABELS:
        raise DefinitionError(
            _problem(name, f"cloud {cloud!r} has no preset"),
            fix="use 'gke', 'eks' or 'aks', or give node_selector yourself",
            field="cloud",
        )
    if cloud == "aks" and accelerator is None:
        accelerator = "nvidia"
    if cloud is not None and not accelerator:
        raise DefinitionError(
            _problem(
                name, f"cloud {cloud!r} needs the accelerator name its nodes are labelled with"
            ),
            fix=f"set accelerator, e.g. {_CLOUD_EXAMPLES[cloud]}",
            field="accelerator",
        )
    if accelerator is not None:
        if cloud is None:
            raise DefinitionError(
                _problem(name, "accelerator is set without a cloud"),
                fix="set cloud='gke', 'eks' or 'aks', or use node_selector for other labels",
                field="accelerator",
            )
        check_label(_CLOUD_LABELS[cloud], accelerator, field="accelerator")

    selectors: dict[str, str] = {}
    for key, value in (node_selector or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise DefinitionError(
                _problem(name, f"node_selector {key!r}: {value!r} is not a string pair"),
                fix="give label values as strings, e.g. {'pool': 'triton'}",
                field="node_selector",
            )
        check_label(key, value, field="node_selector")
        selectors[key] = value
    tols = (
        DEFAULT_TOLERATIONS
        if tolerations is None
        else tuple(
            toleration(t, field=f"tolerations[{i}]") for i, t in enumerate(_sequence(tolerations))
        )
    )
    affinity = _canonical_affinity(name, node_affinity) if node_affinity is not None else None
    pool = GpuPool(
        name=name,
        product=product,
        gpus_per_pod=gpus,
        mig=mig,
        cloud=cloud,
        accelerator=accelerator,
        node_selector=tuple(sorted(selectors.items())),
        tolerations=tols,
        node_affinity=affinity,
    )
    generated = _generated_selector(pool)
    for key, value in generated.items():
        check_label(key, value, field="mig_profile" if pool.mig is not None else "product")
    for key, value in selectors.items():
        if key in generated and generated[key] != value:
            raise DefinitionError(
                _problem(
                    name,
                    f"node_selector {key}={value!r} contradicts the pool's own "
                    f"{key}={generated[key]!r}",
                ),
                fix=f"drop {key!r} from node_selector",
                field="node_selector",
            )
    return pool


def _sequence(value: Sequence[Any]) -> Sequence[Any]:
    if isinstance(value, (str, bytes, Mapping)):
        return [value]
    return value


def _generated_selector(pool: GpuPool) -> dict[str, str]:
    selector: dict[str, str] = {}
    mig = pool.mig
    if pool.product is not None:
        product = pool.product
        if mig is not None and mig.strategy == "single":
            product = f"{product}-MIG-{mig.profile}"
        selector[PRODUCT_LABEL] = product
    if mig is not None and mig.strategy == "single":
        selector[MIG_CONFIG_LABEL] = f"all-{mig.profile}"
    if pool.cloud is not None and pool.accelerator is not None:
        selector[_CLOUD_LABELS[pool.cloud]] = pool.accelerator
        if pool.cloud == "gke" and mig is not None:
            selector[GKE_PARTITION_LABEL] = mig.profile
    return selector


def placement(pool: GpuPool) -> Placement:
    """The pod scheduling pieces for ``pool``: node selector, tolerations, affinity, GPU limits.

    * product: ``nvidia.com/gpu.product=<product>`` (with the single MIG strategy GFD's
      ``<product>-MIG-<profile>``);
    * single MIG strategy: ``nvidia.com/mig.config=all-<profile>`` and ``nvidia.com/gpu`` slices;
    * mixed MIG strategy: ``nvidia.com/mig-<profile>`` slices, nodes found by the resource itself;
    * cloud presets: the cloud's accelerator label (and GKE's partition size with MIG);
    * then the user's own selectors, tolerations and node affinity.
    """
    selector = _generated_selector(pool)
    selector.update(dict(pool.node_selector))
    affinity = (
        m.Affinity(node_affinity=m.NodeAffinity.model_validate(json.loads(pool.node_affinity)))
        if pool.node_affinity is not None
        else None
    )
    return Placement(
        node_selector=dict(sorted(selector.items())),
        tolerations=tuple(t.to_model() for t in pool.tolerations),
        affinity=affinity,
        gpu_resource=pool.gpu_resource,
        gpu_count=pool.gpus_per_pod,
    )
