"""Serving manifests: Triton Deployment, Service, PDB and autoscaler, strictly schema-checked."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema  # type: ignore[import-untyped, unused-ignore]
import kubernetes_validate
import pytest

from rtflow.errors import DefinitionError
from rtflow.gpu.addresses import (
    grpc_address,
    infer_url,
    model_gpu_pool,
    service_url,
    serving_for_model,
)
from rtflow.gpu.autoscalers import (
    HPA_METRICS,
    horizontal_pod_autoscaler,
    keda_scaled_object,
    prometheus_adapter_rules,
)
from rtflow.gpu.models import triton_model
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.repository import model_repository
from rtflow.gpu.scheduling import InstanceGroup
from rtflow.gpu.server import Autoscaling, TritonServing, triton_image, triton_serving
from rtflow.gpu.server_pod import deployment
from rtflow.gpu.serving import serving_manifests

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "models"
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
STANDARD_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/component",
}


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fraud_scorer_example", EXAMPLES / "fraud_scorer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def strict(document: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


def scorer(**overrides: Any) -> Any:
    kwargs: dict[str, Any] = {
        "backend": "python",
        "inputs": [("features", "FP32", [5])],
        "outputs": [("risk", "FP32", [1])],
        "repository": "pvc://triton-models/fraud",
        "max_batch_size": 8,
    }
    kwargs.update(overrides)
    return triton_model(kwargs.pop("name", "scorer"), **kwargs)


def pod_of(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def test_fraud_example_manifests_pass_strict_kubernetes_schemas() -> None:
    objects = serving_manifests(example.SERVER)
    assert [o["kind"] for o in objects] == [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
    ]
    for document in objects:
        strict(document)
        assert set(document["metadata"]["labels"]) >= STANDARD_LABELS
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "fraud-detection"
        assert document["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "rtflow"


def test_deployment_places_the_pod_on_the_pool_with_gpu_limits() -> None:
    document = deployment(example.SERVER)
    pod = pod_of(document)
    assert pod["nodeSelector"] == {
        "cloud.google.com/gke-accelerator": "nvidia-l4",
        "nvidia.com/gpu.product": "NVIDIA-L4",
    }
    assert pod["tolerations"] == [
        {"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}
    ]
    [container] = pod["containers"]
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert container["resources"]["limits"] == {
        "cpu": "2",
        "ephemeral-storage": "20Gi",
        "memory": "8Gi",
        "nvidia.com/gpu": "1",
    }
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert "replicas" not in document["spec"], "the autoscaler owns the replica count"


def test_deployment_probes_ports_and_args() -> None:
    [container] = pod_of(deployment(example.SERVER))["containers"]
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert (
        container["startupProbe"]["failureThreshold"] * container["startupProbe"]["periodSeconds"]
        == 600
    )
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    ]
    # The admin API is closed with a key drawn at start (rtflow.gpu.admin_api).
    assert container["command"][:2] == ["/bin/sh", "-c"]
    assert container["command"][3] == "tritonserver"
    assert "/dev/urandom" in container["command"][2]
    assert (
        'exec tritonserver "$@" --http-restricted-api=model-repository,'
        in (container["command"][2])
    )
    args = container["args"]
    assert args[:2] == [
        "--model-repository=/models/triton-models/fraud",
        "--model-repository=s3://acme-fraud-models/triton",
    ]
    for flag in (
        "--model-control-mode=explicit",
        "--load-model=fraud-scorer",
        "--load-model=graph-risk",
        "--strict-readiness=true",
        "--exit-timeout-secs=30",
        "--disable-auto-complete-config",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-metrics=true",
    ):
        assert flag in args


def test_deployment_is_locked_down_with_writable_tmp_and_memory_shm() -> None:
    document = deployment(example.SERVER)
    pod = pod_of(document)
    assert pod["securityContext"] == {
        "fsGroup": 65532,
        "runAsGroup": 65532,
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["automountServiceAccountToken"] is False
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert mounts["/dev/shm"]["name"] == "dshm"
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    repository = mounts["/models/triton-models"]
    assert repository["readOnly"] is True
    assert volumes[repository["name"]]["persistentVolumeClaim"] == {
        "claimName": "triton-models",
        "readOnly": True,
    }
    annotations = document["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/path": "/metrics",
        "prometheus.io/port": "8002",
        "prometheus.io/scrape": "true",
    }
    assert pod["terminationGracePeriodSeconds"] > 30


def test_cloud_credentials_come_only_from_secret_references() -> None:
    pod = pod_of(deployment(example.SERVER))
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert not any(name.startswith("AWS_ACCESS") or "SECRET" in name for name in env)
    # Triton's cloud credential file, from the Secret, mounted read-only.
    path = env["TRITON_CLOUD_CREDENTIAL_PATH"]["value"]
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["projected"]["defaultMode"] == 0o440
    assert volume["projected"]["sources"] == [
        {
            "secret": {
                "name": "fraud-models-s3",
                "items": [{"key": "credentials.json", "path": "credentials.json"}],
            }
        }
    ]
    assert path.endswith("/credentials.json")
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    # Environment variables stay available when asked for by name.
    model = scorer(
        repository=model_repository(
            "s3://bucket/m", secret="creds", secret_keys={"AWS_ACCESS_KEY_ID": "id"}
        )
    )
    [container] = pod_of(deployment(triton_serving("env-triton", [model])))["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"] == {"secretKeyRef": {"key": "id", "name": "creds"}}


def test_gcs_credentials_are_a_mounted_secret_file() -> None:
    model = scorer(repository=model_repository("gs://bucket/models", secret="gcs-reader"))
    server = triton_serving("gcs-triton", [model])
    strict(deployment(server))
    pod = pod_of(deployment(server))
    [container] = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    path = env["GOOGLE_APPLICATION_CREDENTIALS"]
    assert path is not None
    mount = next(m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    ((source,),) = [volume["projected"]["sources"]]
    assert source["secret"]["name"] == "gcs-reader"
    assert path == f"{mount['mountPath']}/{source['secret']['items'][0]['path']}"
    assert "--model-repository=gs://bucket/models" in container["args"]


def test_service_and_pdb() -> None:
    _, svc, pdb, _ = serving_manifests(example.SERVER)
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [
        ("http", 8000, "http"),
        ("grpc", 8001, "grpc"),
        ("metrics", 8002, "metrics"),
    ]
    selector = {
        "app.kubernetes.io/component": "inference-server",
        "app.kubernetes.io/name": "fraud-triton",
    }
    assert svc["spec"]["selector"] == selector
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": selector}}
    template_labels = deployment(example.SERVER)["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= template_labels.items()


def test_hpa_scales_on_the_adapter_metric() -> None:
    hpa = horizontal_pod_autoscaler(example.SERVER)
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "fraud-triton",
    }
    assert (spec["minReplicas"], spec["maxReplicas"]) == (1, 4)
    [metric] = spec["metrics"]
    assert metric["pods"]["metric"] == {
        "name": "triton_queue_time_per_request_us",
        "selector": {"matchLabels": {"model": "fraud-scorer"}},
    }
    assert metric["pods"]["target"] == {"type": "AverageValue", "averageValue": "2000"}
    rules = prometheus_adapter_rules(example.SERVER)["rules"]
    assert {rule["name"]["as"] for rule in rules} == set(HPA_METRICS.values())
    queue_rule = next(r for r in rules if r["name"]["as"] == HPA_METRICS["queue_time"])
    assert "nv_inference_queue_duration_us" in queue_rule["metricsQuery"]
    assert "nv_inference_request_success" in queue_rule["metricsQuery"]


# KEDA's ScaledObject is a CRD, so kubernetes-validate has no schema for it: this is the part of
# KEDA 2.x's CRD (keda.sh/v1alpha1) that rtflow uses, closed with additionalProperties: false.
_OBJ: dict[str, Any] = {"type": "object", "additionalProperties": False}
KEDA_SCHEMA: dict[str, Any] = {
    **_OBJ,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object"},
        "spec": {
            **_OBJ,
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {
                    **_OBJ,
                    "required": ["name"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer"},
                "cooldownPeriod": {"type": "integer"},
                "initialCooldownPeriod": {"type": "integer"},
                "idleReplicaCount": {"type": "integer"},
                "minReplicaCount": {"type": "integer"},
                "maxReplicaCount": {"type": "integer"},
                "advanced": {
                    **_OBJ,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "horizontalPodAutoscalerConfig": {
                            **_OBJ,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        **_OBJ,
                        "required": ["type", "metadata"],
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                        },
                    },
                },
            },
        },
    },
}


@pytest.mark.parametrize("metric", ["queue_time", "pending_requests"])
def test_keda_scaled_object(metric: str) -> None:
    server = triton_serving(
        "keda-triton",
        [scorer()],
        namespace="fraud",
        autoscaling=Autoscaling(metric, target=50, engine="keda", max_replicas=3),  # type: ignore[arg-type]
    )
    objects = serving_manifests(server)
    assert [o["kind"] for o in objects][-1] == "ScaledObject"
    scaled = objects[-1]
    assert scaled == keda_scaled_object(server)
    jsonschema.validate(scaled, KEDA_SCHEMA)
    spec = scaled["spec"]
    [trigger] = spec["triggers"]
    assert trigger["type"] == "prometheus"
    query = trigger["metadata"]["query"]
    assert 'namespace="fraud"' in query and 'pod=~"keda-triton-' in query
    if metric == "pending_requests":
        assert trigger["metricType"] == "AverageValue"
        assert query.startswith("sum(nv_inference_pending_request_count{")
    else:
        assert trigger["metricType"] == "Value"
        assert "nv_inference_queue_duration_us" in query
    # the behavior block is an autoscaling/v2 HPA behavior: check it with the real schema
    hpa = copy.deepcopy(horizontal_pod_autoscaler(server))
    hpa["spec"]["behavior"] = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    strict(hpa)
    for document in objects[:-1]:
        strict(document)


def test_mig_pool_limits_and_cpu_only_server() -> None:
    pool = gpu_pool(
        "a100-mixed",
        product="NVIDIA-A100-SXM4-80GB",
        gpus_per_pod=2,
        mig_profile="1g.10gb",
        mig_strategy="mixed",
        node_affinity={
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 10,
                    "preference": {
                        "matchExpressions": [
                            {
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["a"],
                            }
                        ]
                    },
                }
            ]
        },
    )
    gpu_model = scorer(instance_groups=[InstanceGroup(count=2, kind="KIND_GPU", gpus=(0, 1))])
    server = triton_serving("mig-triton", [gpu_model], pool=pool, replicas=2)
    document = deployment(server)
    strict(document)
    assert document["spec"]["replicas"] == 2
    pod = pod_of(document)
    assert "nodeAffinity" in pod["affinity"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/mig-1g.10gb"] == "2"

    cpu_server = triton_serving(
        "cpu-triton", [scorer(instance_groups=[InstanceGroup(kind="KIND_CPU")])]
    )
    cpu_pod = pod_of(deployment(cpu_server))
    strict(deployment(cpu_server))
    assert "nodeSelector" not in cpu_pod and "tolerations" not in cpu_pod
    assert set(cpu_pod["containers"][0]["resources"]["limits"]) == {
        "cpu",
        "ephemeral-storage",
        "memory",
    }
    assert "--allow-gpu-metrics=false" in cpu_pod["containers"][0]["args"]
    assert [o["kind"] for o in serving_manifests(cpu_server)] == [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    ]


def test_addresses() -> None:
    assert service_url(example.SERVER) == "http://fraud-triton:8000"
    assert (
        infer_url(example.SERVER, "fraud-scorer", namespace="fraud")
        == "http://fraud-triton.fraud.svc:8000/v2/models/fraud-scorer/infer"
    )
    assert grpc_address(example.SERVER, namespace="fraud") == "fraud-triton.fraud.svc:8001"
    with pytest.raises(DefinitionError, match="does not serve model 'nope'"):
        infer_url(example.SERVER, "nope")


def test_manifests_are_deterministic() -> None:
    first = json.dumps(serving_manifests(example.SERVER), sort_keys=False)
    second = json.dumps(serving_manifests(load_example().SERVER), sort_keys=False)
    assert first == second


def test_local_repository_cannot_be_served_in_a_cluster(tmp_path: Path) -> None:
    server = triton_serving("local-triton", [scorer(repository=tmp_path)])
    assert isinstance(server, TritonServing)
    with pytest.raises(DefinitionError, match="cluster cannot read") as info:
        serving_manifests(server)
    assert info.value.field == "models[scorer].repository"
    assert "\n" not in str(info.value)


def test_image_tag_helper() -> None:
    assert triton_image("25.01") == "nvcr.io/nvidia/tritonserver:25.01-py3"
    with pytest.raises(DefinitionError, match=r"yy\.mm"):
        triton_image("latest")


def test_each_inference_step_finds_the_server_of_its_model() -> None:
    other = triton_serving("other-triton", [scorer(name="other")])
    assert serving_for_model([example.SERVER, other], "graph-risk") is example.SERVER
    with pytest.raises(DefinitionError, match="no Triton server serves model 'nope'") as info:
        serving_for_model([example.SERVER, other], "nope", stage="score")
    assert str(info.value).startswith("stage 'score', field 'model': ")
    twice = triton_serving("twice", [scorer(name="other")])
    with pytest.raises(DefinitionError, match="served by 2 Triton servers"):
        serving_for_model([other, twice], "other")
    assert model_gpu_pool(example.SERVER, "fraud-scorer") is example.POOL
    assert model_gpu_pool(other, "other") is None


def test_the_admin_key_is_mounted_as_a_file() -> None:
    from rtflow.gpu import admin_api
    from rtflow.gpu.server_pod import deployment
    from rtflow.triggers import SecretKey

    server = triton_serving(
        "scorer",
        [example.FRAUD_SCORER],
        pool=example.POOL,
        admin_key=SecretKey("scorer-admin", "key"),
    )
    pod = deployment(server)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == admin_api.VOLUME]
    assert volume["projected"] == {
        "defaultMode": 0o440,
        "sources": [{"secret": {"name": "scorer-admin", "items": [{"key": "key", "path": "key"}]}}],
    }
    (container,) = pod["containers"]
    assert {
        "name": admin_api.VOLUME,
        "mountPath": admin_api.KEY_DIR,
        "readOnly": True,
    } in container["volumeMounts"]
    assert f"cat {admin_api.KEY_DIR}/key" in container["command"][2]
    assert not any("admin" in e["name"].lower() for e in container.get("env", []))
