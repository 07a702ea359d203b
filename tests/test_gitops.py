"""Environments (kustomize overlays) and Argo CD Applications: layout, content, errors.

Overlays are built with the real kustomize (``kustomize build``, the release pinned in
tools/kustomize/go.mod, built into .tools/bin by tools/provision.sh; rtflow.verify.kustomize).
Applications are checked strictly against Argo CD's own Application schema, the CRD's
openAPIV3Schema of the release pinned in tools/crd_schemas.py, which tools/provision.sh
writes into .tools/schemas (rtflow.verify.argocd_schema). Without them these tests skip with
the reason, and fail under CI=true.
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

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import render_folder
from rtflow.gpu.pools import gpu_pool
from rtflow.verify import argocd_schema
from rtflow.verify.kustomize import KustomizeError, KustomizeUnavailable, kustomize_build

TARGET = str(PIPELINES / "with_environments.py")
L4_OTHER = gpu_pool("l4-other", product="NVIDIA-L4", cloud="gke", accelerator="nvidia-l4")


def rtflow_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def kustomize(folder: Path) -> list[dict[str, Any]]:
    try:
        return kustomize_build(folder)
    except KustomizeUnavailable as exc:
        component_missing(str(exc))


def application_errors(app: dict[str, Any]) -> list[str]:
    """Argo CD's own Application schema, strict: one line per problem, with its path."""
    try:
        return argocd_schema.application_errors(app)
    except argocd_schema.ArgoCDSchemaUnavailable as exc:
        component_missing(str(exc))


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
    # Retagged and pinned (kustomize keeps a new tag and a digest both): no tag alone reaches prod.
    assert pod["containers"][0]["image"] == (
        "nvcr.io/nvidia/tritonserver:25.01-py3@sha256:"
        "483ebd4e35a26af67a93727f6e0077135e96223e9fc51c210e9c37877d312cd8"
    )
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
    # Not retagged by image_tag: Triton keeps its own, pinned, reference.
    assert triton["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        ":24.10-py3@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5"
    )
    assert kustomize(out)  # the top-level kustomization over the bases builds too


def test_a_failing_kustomize_build_names_the_folder_and_the_reason(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    with pytest.raises(KustomizeError) as error:
        kustomize(tmp_path)
    assert f"kustomize build {tmp_path} failed: Error: accumulating resources" in str(error.value)
    assert "missing.yaml" in str(error.value)
    # The default load restrictor: a kustomization may not reach outside its own folder.
    outside = tmp_path / "outside.yaml"
    outside.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n")
    (tmp_path / "inner").mkdir()
    (tmp_path / "inner/kustomization.yaml").write_text("resources:\n- ../outside.yaml\n")
    with pytest.raises(KustomizeError, match="is not in or below"):
        kustomize(tmp_path / "inner")


SYNC_OPTIONS = {
    "CreateNamespace=true",
    "ServerSideApply=true",
    "PruneLast=true",
    "ApplyOutOfSyncOnly=true",
    "RespectIgnoreDifferences=true",
}


def test_applications_are_strictly_shaped(out: Path) -> None:
    for name in ("dev", "prod"):
        app = load(out / f"argocd/application-scoring-{name}.yaml")
        assert application_errors(app) == []
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


def test_the_application_schema_check_can_fail(out: Path) -> None:
    app = load(out / "argocd/application-scoring-prod.yaml")
    app["spec"]["syncPolicy"]["automatic"] = {"prune": True}  # misspelt: automated
    app["spec"]["syncPolicy"]["retry"]["limit"] = "5"
    app["spec"]["source"]["repoUrl"] = app["spec"]["source"].pop("repoURL")
    app["metadata"]["labels"]["tier"] = 1
    assert application_errors(app) == [
        "metadata.labels.tier: 1 is not of type 'string', 'null'",
        "spec.source.repoURL: required field is missing",
        "spec.source.repoUrl: unknown field",
        "spec.syncPolicy.automatic: unknown field",
        "spec.syncPolicy.retry.limit: '5' is not of type 'integer'",
    ]
    app = load(out / "argocd/application-scoring-prod.yaml")
    app["apiVersion"] = "argoproj.io/v1"
    del app["metadata"]["name"]
    assert application_errors(app) == [
        "apiVersion: 'argoproj.io/v1' is not 'argoproj.io/v1alpha1'",
        "metadata.name: an Argo CD Application needs a name",
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
    assert application_errors(app) == []
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
        # Triton per environment (tests/test_environment_overlays.py has the rest).
        ({"cpu_only": "yes"}, "cpu_only must be True or False"),
        ({"cpu_only": True, "gpu_pool": L4_OTHER}, "cpu_only and gpu_pool are both given"),
        ({"models": {"scorer-triton": ["nope"]}}, "'nope' is not a model of 'scorer-triton'"),
        ({"models": {"scorer-triton": []}}, "non-empty list"),
        ({"models": {"other": ["scorer"]}}, "'other' is not a Triton server"),
        ({"server_resources": {"scorer-triton": {"cpu": "1"}}}, "give cpu and memory"),
        (
            {"server_resources": {"scorer-triton": {"cpu": "lots", "memory": "1Gi"}}},
            "server_resources['scorer-triton'].cpu",
        ),
        ({"images": {"nvcr.io/nvidia/tritonserver": "Mirror/Triton:1"}}, "not an image reference"),
        ({"images": {"nvcr.io/nvidia/tritonserver": "mirror.local/triton"}}, "no tag or digest"),
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
