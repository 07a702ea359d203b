"""Environments (kustomize overlays) and Argo CD Applications: layout, content, errors.

Overlays are built with the real kustomize (``kubectl kustomize``) when kubectl is installed.
There is no Argo CD schema in the repository: Applications are checked against a strict
allow-list of the Application fields rtflow emits, written from Argo CD's documented spec
(https://argo-cd.readthedocs.io/en/stable/operator-manual/declarative-setup/, application.yaml).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compiled import PIPELINES, ROOT
from components import component_missing

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import render_folder

TARGET = str(PIPELINES / "with_environments.py")


def rtflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def kustomize(folder: Path) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        component_missing("kubectl (for `kubectl kustomize`) is not installed")
    built = subprocess.run(
        ["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60
    )
    assert built.returncode == 0, built.stderr
    return list(yaml.safe_load_all(built.stdout))


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gitops")
    result = rtflow_cli("compile", TARGET, "-o", str(root))
    assert result.returncode == 0, result.stderr
    return root


def test_layout_with_environments(out: Path) -> None:
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert "scoring/base/kustomization.yaml" in files
    assert "scoring/base/workflowtemplate-scoring.yaml" in files
    assert not any(
        f.startswith("scoring/") and f.count("/") == 1 and f.endswith(".yaml") for f in files
    )
    assert [f for f in files if "/overlays/" in f] == [
        "scoring/overlays/dev/kustomization.yaml",
        "scoring/overlays/dev/kustomizeconfig.yaml",
        "scoring/overlays/prod/kustomization.yaml",
        "scoring/overlays/prod/kustomizeconfig.yaml",
        "scoring/overlays/prod/patch-deployment-scorer-triton.yaml",
        "scoring/overlays/prod/patch-eventsource-scoring-orders.yaml",
        "scoring/overlays/prod/patch-horizontalpodautoscaler-scorer-triton.yaml",
        "scoring/overlays/prod/patch-sensor-scoring.yaml",
    ]
    assert [f for f in files if f.startswith("argocd/")] == [
        "argocd/application-scoring-dev.yaml",
        "argocd/application-scoring-prod.yaml",
    ]
    assert load(out / "kustomization.yaml")["resources"] == ["scoring/base"]
    assert (
        "kubectl apply --server-side -k scoring/overlays/dev"
        in (out / "scoring/README.md").read_text()
    )


def test_prod_overlay_builds_with_kustomize(out: Path) -> None:
    objects = {
        (d["kind"], d["metadata"]["name"]): d for d in kustomize(out / "scoring/overlays/prod")
    }
    assert {d["metadata"]["namespace"] for d in objects.values()} == {"scoring-prod"}
    assert all(d["metadata"]["labels"]["env"] == "prod" for d in objects.values())
    deployment = objects[("Deployment", "scorer-triton")]
    assert deployment["spec"]["selector"]["matchLabels"].get("env") is None  # selectors untouched
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"]["pool"] == "prod"
    assert pod["containers"][0]["image"] == "nvcr.io/nvidia/tritonserver:25.01-py3"
    hpa = objects[("HorizontalPodAutoscaler", "scorer-triton")]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (6, 6)
    brokers = "kafka-0.prod:9092,kafka-1.prod:9092"
    assert objects[("EventSource", "scoring-orders")]["spec"]["kafka"]["orders"]["url"] == brokers
    dlq = objects[("Sensor", "scoring")]["spec"]["triggers"][0]["dlqTrigger"]
    assert dlq["template"]["kafka"]["url"] == brokers
    images = {
        t["container"]["image"]
        for t in objects[("WorkflowTemplate", "scoring")]["spec"]["templates"]
        if "container" in t
    }
    assert {"ghcr.io/acme/shop/features:1.4.0", "ghcr.io/acme/shop/publish:1.0.0"} <= images
    for (kind, name), document in objects.items():
        if kind == "RoleBinding":
            assert {s["namespace"] for s in document["subjects"]} == {"scoring-prod"}, name


def test_dev_overlay_retags_own_images_only(out: Path) -> None:
    objects = kustomize(out / "scoring/overlays/dev")
    template = next(d for d in objects if d["kind"] == "WorkflowTemplate")
    images = {t["container"]["image"] for t in template["spec"]["templates"] if "container" in t}
    assert {"ghcr.io/acme/shop/features:1.5.0-rc1", "ghcr.io/acme/shop/publish:1.5.0-rc1"} <= images
    triton = next(d for d in objects if d["kind"] == "Deployment")
    assert triton["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":24.10-py3")
    assert kustomize(out)  # the top-level kustomization over the bases builds too


# The Application fields rtflow emits, from Argo CD's documented Application spec
# (argoproj.io/v1alpha1). Strict: any key not listed here is a finding.
APPLICATION_SPEC: dict[str, Any] = {
    "apiVersion": str,
    "kind": str,
    "metadata": {"name": str, "namespace": str, "labels": {str: str}, "finalizers": [str]},
    "spec": {
        "project": str,
        "source": {"repoURL": str, "targetRevision": str, "path": str},
        "destination": {"server": str, "namespace": str},
        "syncPolicy": {
            "automated": {"prune": bool, "selfHeal": bool},
            "syncOptions": [str],
            "retry": {
                "limit": int,
                "backoff": {"duration": str, "factor": int, "maxDuration": str},
            },
        },
        "ignoreDifferences": [
            {"group": str, "kind": str, "name": str, "namespace": str, "jsonPointers": [str]}
        ],
        "revisionHistoryLimit": int,
    },
}
SYNC_OPTIONS = {
    "CreateNamespace=true",
    "ServerSideApply=true",
    "PruneLast=true",
    "ApplyOutOfSyncOnly=true",
    "RespectIgnoreDifferences=true",
}


def strict(value: Any, shape: Any, where: str) -> list[str]:
    if isinstance(shape, dict) and str in shape:
        if not isinstance(value, dict):
            return [f"{where}: not a map"]
        return [f"{where}.{k}: not a string" for k, v in value.items() if not isinstance(v, str)]
    if isinstance(shape, dict):
        if not isinstance(value, dict):
            return [f"{where}: not a map"]
        problems = [f"{where}.{k}: unknown field" for k in value if k not in shape]
        for key, sub in value.items():
            if key in shape:
                problems += strict(sub, shape[key], f"{where}.{key}")
        return problems
    if isinstance(shape, list):
        if not isinstance(value, list) or not value:
            return [f"{where}: not a non-empty list"]
        return [p for i, item in enumerate(value) for p in strict(item, shape[0], f"{where}[{i}]")]
    ok = isinstance(value, shape) and not (shape is int and isinstance(value, bool))
    return [] if ok else [f"{where}: not a {shape.__name__}"]


def test_applications_are_strictly_shaped(out: Path) -> None:
    for name in ("dev", "prod"):
        app = load(out / f"argocd/application-scoring-{name}.yaml")
        assert strict(app, APPLICATION_SPEC, "Application") == []
        assert (app["apiVersion"], app["kind"]) == ("argoproj.io/v1alpha1", "Application")
        spec = app["spec"]
        for required in ("project", "source", "destination"):
            assert required in spec
        assert set(spec["syncPolicy"]["syncOptions"]) <= SYNC_OPTIONS
        assert spec["syncPolicy"]["automated"] == {"prune": True, "selfHeal": True}
        assert spec["source"]["path"] == f"clusters/main/scoring/overlays/{name}"
        assert spec["destination"]["namespace"] == f"scoring-{name}"
        assert (out / spec["source"]["path"].removeprefix("clusters/main/")).is_dir()
        assert spec["ignoreDifferences"] == [
            {
                "group": "apps",
                "kind": "Deployment",
                "name": "scorer-triton",
                "jsonPointers": ["/spec/replicas"],
            }
        ]


def test_strict_check_catches_unknown_fields() -> None:
    bad = {
        "apiVersion": "v",
        "kind": "Application",
        "metadata": {"name": "x"},
        "spec": {
            "project": "p",
            "source": {"repoUrl": "x"},
            "syncPolicy": {"automated": {"prune": "yes"}},
        },
    }
    assert strict(bad, APPLICATION_SPEC, "A") == [
        "A.spec.source.repoUrl: unknown field",
        "A.spec.syncPolicy.automated.prune: not a bool",
    ]


def test_env_selects_one_overlay_and_keeps_the_others(tmp_path: Path) -> None:
    assert rtflow_cli("compile", TARGET, "-o", str(tmp_path)).returncode == 0
    prod = tmp_path / "scoring/overlays/prod/kustomization.yaml"
    before = prod.read_text()
    (tmp_path / "scoring/overlays/dev/kustomization.yaml").unlink()
    result = rtflow_cli("compile", TARGET, "-o", str(tmp_path), "--env", "dev")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "scoring/overlays/dev/kustomization.yaml").exists()
    assert prod.read_text() == before
    assert (
        rtflow_cli("compile", TARGET, "-o", str(tmp_path), "--check", "--env", "dev").returncode
        == 0
    )
    assert rtflow_cli("compile", TARGET, "-o", str(tmp_path), "--check").returncode == 0
    unknown = rtflow_cli("compile", TARGET, "-o", str(tmp_path), "--env", "staging")
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1
    assert "declares no environment 'staging'" in unknown.stderr


def test_no_environments_stays_flat_and_explains_argo_cd(tmp_path: Path) -> None:
    target = str(PIPELINES / "two_pipelines.py")
    assert rtflow_cli("compile", target, "-o", str(tmp_path)).returncode == 0
    assert (tmp_path / "ingest/workflowtemplate-ingest.yaml").exists()
    assert not (tmp_path / "argocd").exists() and not (tmp_path / "ingest/overlays").exists()
    assert "--repo-url URL" in (tmp_path / "ingest/README.md").read_text()
    missing_prefix = rtflow_cli(
        "compile", target, "-o", str(tmp_path), "--repo-url", "https://github.com/acme/deploy.git"
    )
    assert missing_prefix.returncode == 2 and "--path-prefix" in missing_prefix.stderr
    assert rtflow_cli("compile", target, "-o", str(tmp_path), "--env", "dev").returncode == 2


def test_repo_url_from_the_command_line_and_relative_output(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rtflow.cli",
            "compile",
            str(PIPELINES / "two_pipelines.py"),
            "-o",
            "deploy/out",
            "--repo-url",
            "git@github.com:acme/deploy.git",
            "--revision",
            "main",
        ],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    app = load(tmp_path / "deploy/out/argocd/application-ingest.yaml")
    assert strict(app, APPLICATION_SPEC, "Application") == []
    assert app["spec"]["source"] == {
        "repoURL": "git@github.com:acme/deploy.git",
        "targetRevision": "main",
        "path": "deploy/out/ingest",
    }
    assert "ignoreDifferences" not in app["spec"]


def test_compile_is_deterministic() -> None:
    from rtflow.loader import load_pipelines

    def render() -> dict[str, str]:
        pipelines = [p.build() for p in load_pipelines(TARGET)[1]]
        return render_folder(compile_pipelines(pipelines))

    assert render() == render()


def _build(**environment: Any) -> None:
    from rtflow.loader import load_pipelines

    (definition,) = load_pipelines(TARGET)[1]
    env = rtflow.Environment(environment.pop("name", "qa"), **environment)
    options = definition.options.__class__(
        **{**definition.options.__dict__, "environments": (env,)}
    )
    definition.__class__(definition.function, options).build()


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"name": "QA"}, "field 'environments[0].name': environment name 'QA'"),
        ({"namespace": "Bad_NS"}, "field \"environments['qa'].namespace\""),
        ({"image_tag": "1", "images": {"x": "1"}}, "image_tag and images are both given"),
        ({"image_tag": "bad tag"}, "'bad tag' is not an image tag"),
        ({"images": {"ghcr.io/acme/other": "1"}}, "is not used by the pipeline"),
        ({"images": {"ghcr.io/acme/shop/features:1.0.0": "1"}}, "carries a tag or digest"),
        ({"replicas": {"nope": 2}}, "'nope' is not a Triton server of the pipeline"),
        ({"replicas": {"scorer-triton": 0}}, "outside 1..1000"),
        ({"kafka_brokers": ["no-port"]}, "'no-port' is not a host:port broker address"),
        ({"gpu_pool": "l4"}, "not a GPU pool"),
        ({"labels": {"env": "a b"}}, "is not a valid Kubernetes label value"),
    ],
)
def test_environment_errors_name_the_field(environment: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as error:
        _build(**environment)
    text = str(error.value)
    assert "\n" not in text and text.startswith("pipeline 'scoring', field ")
    assert message in text


def test_a_pool_of_another_gpu_shape_is_refused() -> None:
    from rtflow.gpu.pools import gpu_pool

    two = gpu_pool("big", product="NVIDIA-L4", gpus_per_pod=2, cloud="gke", accelerator="nvidia-l4")
    with pytest.raises(DefinitionError, match="same GPU resource and count"):
        _build(gpu_pool=two)


def test_duplicate_environments_are_refused() -> None:
    from rtflow.environments import build_environments

    with pytest.raises(DefinitionError, match="declared twice"):
        build_environments(
            [rtflow.Environment("a"), rtflow.Environment("a")], stages=(), servers=(), triggers=()
        )
