"""GPU pools: node labels, tolerations, MIG strategies, cloud presets and the affinity hatch."""

from __future__ import annotations

import pytest

from rtflow.errors import DefinitionError
from rtflow.gpu.pools import (
    GPU_RESOURCE,
    MIG_PROFILES,
    Toleration,
    gpu_pool,
    mig_profiles_for,
    placement,
    toleration,
)


def test_plain_pool_selects_the_product_and_tolerates_the_gpu_taint() -> None:
    pool = gpu_pool("l4", product="NVIDIA-L4", gpus_per_pod=2)
    where = placement(pool)
    assert where.node_selector == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert where.pod_spec_fields()["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    assert where.affinity is None
    assert (where.gpu_resource, where.gpu_count) == (GPU_RESOURCE, 2)
    assert {k: v.root for k, v in where.gpu_limits().items()} == {"nvidia.com/gpu": "2"}


def test_single_mig_strategy_uses_nvidia_gpu_on_mig_labelled_nodes() -> None:
    pool = gpu_pool(
        "a100-mig",
        product="NVIDIA-A100-SXM4-40GB",
        mig_profile="1g.5gb",
        mig_strategy="single",
    )
    where = placement(pool)
    assert where.gpu_resource == "nvidia.com/gpu"
    assert where.node_selector == {
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb",
        "nvidia.com/mig.config": "all-1g.5gb",
    }


def test_mixed_mig_strategy_requests_the_profile_resource() -> None:
    pool = gpu_pool(
        "h100-slices",
        product="NVIDIA-H100-80GB-HBM3",
        gpus_per_pod=3,
        mig_profile="1g.10gb",
        mig_strategy="mixed",
    )
    where = placement(pool)
    assert where.gpu_resource == "nvidia.com/mig-1g.10gb"
    assert where.gpu_count == 3
    assert where.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


@pytest.mark.parametrize(
    ("cloud", "accelerator", "label", "value"),
    [
        ("gke", "nvidia-l4", "cloud.google.com/gke-accelerator", "nvidia-l4"),
        ("eks", "a10g", "karpenter.k8s.aws/instance-gpu-name", "a10g"),
        ("aks", None, "kubernetes.azure.com/accelerator", "nvidia"),
    ],
)
def test_cloud_presets_add_the_cloud_label(
    cloud: str, accelerator: str | None, label: str, value: str
) -> None:
    pool = gpu_pool("gpus", cloud=cloud, accelerator=accelerator)  # type: ignore[arg-type]
    assert placement(pool).node_selector == {label: value}


def test_gke_mig_adds_the_partition_size() -> None:
    pool = gpu_pool(
        "gke-mig",
        cloud="gke",
        accelerator="nvidia-tesla-a100",
        mig_profile="1g.5gb",
        mig_strategy="single",
    )
    assert placement(pool).node_selector == {
        "cloud.google.com/gke-accelerator": "nvidia-tesla-a100",
        "cloud.google.com/gke-gpu-partition-size": "1g.5gb",
        "nvidia.com/mig.config": "all-1g.5gb",
    }


def test_user_selectors_tolerations_and_affinity() -> None:
    affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [
                {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}
            ]
        }
    }
    pool = gpu_pool(
        "custom",
        node_selector={"pool": "triton", "team": "fraud"},
        tolerations=[
            "nvidia.com/gpu:NoSchedule",
            "dedicated=triton:NoExecute",
            {"key": "spot", "operator": "Exists"},
        ],
        node_affinity=affinity,
    )
    fields = placement(pool).pod_spec_fields()
    assert fields["nodeSelector"] == {"pool": "triton", "team": "fraud"}
    assert fields["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"},
        {"effect": "NoExecute", "key": "dedicated", "operator": "Equal", "value": "triton"},
        {"key": "spot", "operator": "Exists"},
    ]
    assert fields["affinity"] == {"nodeAffinity": affinity}
    hash(pool)  # the IR is hashable: the affinity is kept as canonical JSON


def test_pool_declaration_is_deterministic_whatever_the_dict_order() -> None:
    a = gpu_pool("p", node_selector={"b": "2", "a": "1"})
    b = gpu_pool("p", node_selector={"a": "1", "b": "2"})
    assert a == b


def test_toleration_parsing() -> None:
    assert toleration("nvidia.com/gpu") == Toleration("nvidia.com/gpu", "Exists", None, None)
    assert toleration("k=v:NoSchedule") == Toleration("k", "Equal", "v", "NoSchedule")
    everything = toleration({"operator": "Exists"})
    assert everything.key is None and everything.to_model().operator == "Exists"


def test_mig_tables() -> None:
    assert mig_profiles_for("NVIDIA-A100-SXM4-80GB") == (
        "1g.10gb",
        "1g.20gb",
        "2g.20gb",
        "3g.40gb",
        "4g.40gb",
        "7g.80gb",
    )
    a100_40 = mig_profiles_for("NVIDIA-A100-PCIE-40GB")
    assert a100_40 is not None and "1g.5gb" in a100_40
    assert mig_profiles_for("NVIDIA-A30") == ("1g.6gb", "2g.12gb", "4g.24gb")
    assert mig_profiles_for("Tesla-T4") == ()
    assert mig_profiles_for("NVIDIA-B200") is None  # MIG-capable, profiles not tabled
    assert mig_profiles_for(None) is None
    assert MIG_PROFILES[0] == "1g.5gb" and "7g.141gb" in MIG_PROFILES


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"gpus_per_pod": 0}, "gpus_per_pod", "out of range"),
        ({"gpus_per_pod": 17}, "gpus_per_pod", "out of range"),
        ({"mig_strategy": "single"}, "mig_strategy", "without a MIG profile"),
        ({"mig_profile": "1g.5gb"}, "mig_strategy", "no MIG strategy"),
        ({"mig_profile": "big", "mig_strategy": "mixed"}, "mig_profile", "not of the form"),
        ({"mig_profile": "1g.5gb", "mig_strategy": "both"}, "mig_strategy", "not a MIG strategy"),
        (
            {"product": "NVIDIA-A100-SXM4-80GB", "mig_profile": "1g.5gb", "mig_strategy": "mixed"},
            "mig_profile",
            "does not exist on",
        ),
        ({"cloud": "gke"}, "accelerator", "needs the accelerator"),
        ({"cloud": "ibm", "accelerator": "x"}, "cloud", "no preset"),
        ({"accelerator": "nvidia-l4"}, "accelerator", "without a cloud"),
        ({"tolerations": ["a:Sometimes"]}, "tolerations[0]", "not a taint effect"),
        ({"tolerations": [{"key": "a", "value": "b", "operator": "Exists"}]}, "tolerations[0]", ""),
        ({"tolerations": [{"key": "a", "bogus": 1}]}, "tolerations[0]", "unknown field"),
        ({"node_selector": {"bad key!": "x"}}, "node_selector", "qualified name"),
        ({"node_affinity": {"required": {}}}, "node_affinity", "does not have"),
        ({"node_affinity": {}}, "node_affinity", "empty"),
        (
            {"product": "NVIDIA-L4", "node_selector": {"nvidia.com/gpu.product": "NVIDIA-T4"}},
            "node_selector",
            "contradicts",
        ),
    ],
)
def test_bad_pools_fail_with_one_line_naming_the_field(
    kwargs: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        gpu_pool("pool", **kwargs)  # type: ignore[arg-type]
    assert info.value.field == field
    assert message in str(info.value)
    assert "\n" not in str(info.value)
    assert f"field {field!r}" in str(info.value)


def test_bad_pool_name() -> None:
    with pytest.raises(DefinitionError, match="use 'gpu-pool-a'") as info:
        gpu_pool("GPU_pool_A")
    assert info.value.field == "name"
