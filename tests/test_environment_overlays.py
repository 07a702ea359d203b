"""Environments as deployed: the kustomize overlay Argo CD builds and the objects rtflow applies
(``compile -o - --env``, ``submit --env``) are the same objects, for every example.

The overlays are built with the real kustomize (pinned, built from its Go module by
``tools/provision.sh``); the comparison is object by object, so any transformer rtflow applies
differently from kustomize (namespace, labels, images, JSON6902 patches) shows up by name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compiled import PIPELINES, ROOT
from components import component_missing

from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.overlays import json_patch, retag
from rtflow.generators.writers import write_folder
from rtflow.ir import ImageOverride
from rtflow.loader import load_pipelines

TARGETS = [
    ROOT / "examples/fraud_detection.py",
    ROOT / "examples/support_triage.py",
    PIPELINES / "with_environments.py",
    PIPELINES / "namespaced.py",
]


def kustomize(folder: Path) -> list[dict[str, Any]]:
    from rtflow.verify.kustomize import KustomizeUnavailable, kustomize_build

    try:
        return kustomize_build(folder)
    except KustomizeUnavailable as missing:
        component_missing(str(missing))


def by_identity(documents: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def compiled(target: Path, tmp_path: Path) -> Any:
    pipelines = [d.build() for d in load_pipelines(str(target))[1]]
    bundle = compile_pipelines(pipelines)
    write_folder(bundle, tmp_path)
    return bundle


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.stem)
def test_every_overlay_builds_to_what_rtflow_applies(target: Path, tmp_path: Path) -> None:
    bundle = compiled(target, tmp_path)
    environments = sorted({(m.pipeline, env) for env, m in bundle.rendered})
    assert environments, "the target declares environments"
    for pipeline, env in environments:
        built = by_identity(kustomize(tmp_path / pipeline / "overlays" / env))
        ours = by_identity([m.body for m in bundle.deployed(pipeline, env)])
        assert sorted(built) == sorted(ours), (pipeline, env)
        for identity, document in ours.items():
            assert built[identity] == document, (pipeline, env, identity)


def test_the_kind_environment_runs_triton_on_cpu_with_the_scorer_only(tmp_path: Path) -> None:
    bundle = compiled(ROOT / "examples/fraud_detection.py", tmp_path)
    kind = by_identity([m.body for m in bundle.deployed("fraud-detection", "kind")])
    prod = by_identity([m.body for m in bundle.deployed("fraud-detection", "prod")])
    pod = kind[("Deployment", "fraud-triton")]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert not any("nvidia.com" in key for key in container["resources"]["limits"])
    assert container["resources"]["requests"] == {
        "cpu": "500m",
        "ephemeral-storage": "1Gi",
        "memory": "1Gi",
    }
    assert "nodeAffinity" not in pod["affinity"]  # the GPU pool's placement is gone
    assert container["image"] == "localhost/rtflow/tritonserver-cpu:2.51.0"
    assert "--load-model=fraud-scorer" in container["args"]
    assert not any("graph-risk" in arg or arg.startswith("s3://") for arg in container["args"])
    assert not any(e["name"].startswith("AWS_") for e in container["env"])
    # prod keeps the GPU, the pool and both models.
    prod_pod = prod[("Deployment", "fraud-triton")]["spec"]["template"]["spec"]
    assert prod_pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--load-model=graph-risk" in prod_pod["containers"][0]["args"]
    # The overlay ships the CPU model config for that cluster's model repository.
    config = tmp_path / "fraud-detection/overlays/kind/model-repository/fraud-scorer/config.pbtxt"
    assert "kind: KIND_CPU" in config.read_text()
    assert not (tmp_path / "fraud-detection/overlays/kind/model-repository/graph-risk").exists()
    base = tmp_path / "fraud-detection/model-repository/fraud-scorer/config.pbtxt"
    assert "kind: KIND_GPU" in base.read_text()


def test_kind_points_every_kafka_client_at_its_brokers(tmp_path: Path) -> None:
    bundle = compiled(ROOT / "examples/fraud_detection.py", tmp_path)
    kind = by_identity([m.body for m in bundle.deployed("fraud-detection", "kind")])
    brokers = "kafka.kafka.svc.cluster.local:9093"
    source = kind[("EventSource", "fraud-detection-handoff")]
    assert source["spec"]["kafka"]["handoff"]["url"] == brokers
    sensor = kind[("Sensor", "fraud-detection")]
    assert sensor["spec"]["triggers"][0]["dlqTrigger"]["template"]["kafka"]["url"] == brokers
    # The hot path (and its publish stage) runs in the stream workers, with the same brokers.
    workers = kind[("Deployment", "fraud-detection-stream")]
    (container,) = workers["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KAFKA_BROKERS"] == brokers
    scaler = kind[("ScaledObject", "fraud-detection-stream")]
    assert scaler["spec"]["triggers"][0]["metadata"]["bootstrapServers"] == brokers
    assert all(m.body["metadata"].get("namespace") == "fraud" for _, m in bundle.rendered)


def test_stream_and_submit_take_one_environment() -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rtflow.cli", *args], cwd=ROOT, capture_output=True, text=True
        )

    kind = cli("compile", "examples/fraud_detection.py", "-o", "-", "--env", "kind")
    assert kind.returncode == 0, kind.stderr
    documents = list(yaml.safe_load_all(kind.stdout))
    kinds = [d["kind"] for d in documents]
    # Applied in sync-wave order: identities, Triton, the template, then what starts it.
    assert kinds.index("ServiceAccount") < kinds.index("Deployment") < kinds.index("Sensor")
    assert kinds.index("Deployment") < kinds.index("WorkflowTemplate")
    assert {d["metadata"]["namespace"] for d in documents} == {"fraud"}
    base = cli("compile", "examples/fraud_detection.py", "-o", "-")
    assert "namespace: fraud" not in base.stdout and "nvidia.com/gpu" in base.stdout
    both = cli(
        "compile", "examples/fraud_detection.py", "-o", "-", "--env", "kind", "--env", "prod"
    )
    assert both.returncode == 2 and both.stderr.count("\n") == 1
    assert "pick one" in both.stderr and "Traceback" not in both.stderr
    missing = cli("compile", "examples/fraud_detection.py", "-o", "-", "--env", "qa")
    assert missing.returncode == 2 and "declares no environment 'qa'" in missing.stderr


def test_a_model_the_pipeline_calls_cannot_be_left_out() -> None:
    import rtflow
    from rtflow.gpu.models import triton_model
    from rtflow.gpu.server import triton_serving
    from rtflow.gpu.tensors import Tensor

    used = triton_model(
        "used",
        backend="python",
        inputs=[Tensor("x", "TYPE_FP32", (1,))],
        outputs=[Tensor("y", "TYPE_FP32", (1,))],
        repository="pvc://models/m",
        versions=[1],
    )
    spare = triton_model(
        "spare",
        backend="python",
        inputs=[Tensor("x", "TYPE_FP32", (1,))],
        outputs=[Tensor("y", "TYPE_FP32", (1,))],
        repository="pvc://models/m",
        versions=[1],
    )
    server = triton_serving("two-models", [used, spare])

    def define(models: list[str]) -> rtflow.Pipeline:
        @rtflow.pipeline(
            name="calls-used",
            environments=[rtflow.Environment("dev", models={server.name: models})],
        )
        def calls_used(x: list[float]) -> None:
            rtflow.infer(server, used, {"x": x})

        return calls_used

    assert define(["used"]).build().environments[0].models == (("two-models", ("used",)),)
    with pytest.raises(DefinitionError, match="model 'used' is left out"):
        define(["spare"]).build()


def test_json_patch_turns_one_document_into_the_other() -> None:
    old = {"a": 1, "b": {"c": [1, 2], "d": "x"}, "e": [{"f": 1}], "gone": True}
    new = {"a": 2, "b": {"c": [1, 2, 3], "d": "x"}, "e": [{"f": 2}], "h/i": None}
    ops = list(json_patch(old, new))
    assert ops == [
        {"op": "remove", "path": "/gone"},
        {"op": "add", "path": "/h~1i", "value": None},
        {"op": "replace", "path": "/a", "value": 2},
        {"op": "replace", "path": "/b/c", "value": [1, 2, 3]},
        {"op": "replace", "path": "/e/0/f", "value": 2},
    ]
    assert list(json_patch(new, new)) == []


@pytest.mark.parametrize(
    ("reference", "override", "expected"),
    [
        ("a/b:1", ImageOverride("a/b", new_tag="2"), "a/b:2"),
        ("a/b", ImageOverride("a/b", new_tag="2"), "a/b:2"),
        ("a/b:1", ImageOverride("a/b", new_name="m/b"), "m/b:1"),
        ("a/b:1", ImageOverride("a/b", new_name="m/c", new_tag="3"), "m/c:3"),
        ("a/b:1", ImageOverride("a/b", digest="sha256:" + "0" * 64), "a/b@sha256:" + "0" * 64),
        # As kustomize 5 builds them (checked with .tools/bin/kustomize): a new tag with a
        # digest keeps both; a new tag alone drops the old digest; a new name alone keeps it.
        (
            "a/b:1",
            ImageOverride("a/b", new_tag="2", digest="sha256:" + "0" * 64),
            "a/b:2@sha256:" + "0" * 64,
        ),
        ("a/b:1@sha256:" + "1" * 64, ImageOverride("a/b", new_tag="2"), "a/b:2"),
        (
            "a/b:1@sha256:" + "1" * 64,
            ImageOverride("a/b", new_name="m/b"),
            "m/b:1@sha256:" + "1" * 64,
        ),
        ("host:5000/a/b:1", ImageOverride("host:5000/a/b", new_tag="2"), "host:5000/a/b:2"),
        ("a/bc:1", ImageOverride("a/b", new_tag="2"), "a/bc:1"),
    ],
)
def test_retag_follows_kustomize_images(
    reference: str, override: ImageOverride, expected: str
) -> None:
    assert retag(reference, [override]) == expected
