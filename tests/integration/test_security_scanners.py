"""What a cluster receives passes the scanners a platform team runs (issue #13): every compiled
example and test pipeline, each environment built with the real kustomize (the base when it
declares none), has no failed checkov Kubernetes check and no kube-score CRITICAL.

kube-score is built from its Go module (tools/kube-score, pinned), checkov installed from PyPI
into .tools/checkov-venv (tools/checkov.sh); both by tools/provision.sh. Skips they take are
annotations on the objects that say why (a NetworkPolicy over pods a controller makes; an image
loaded into a kind node) and are counted here, so a new skip is a visible decision.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from compiled import PIPELINES, ROOT
from components import component_missing

from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.loader import load_pipelines

pytestmark = pytest.mark.integration

TOOLS = ROOT / ".tools"
KUBE_SCORE = TOOLS / "bin" / "kube-score"
CHECKOV = TOOLS / "checkov-venv" / "bin" / "checkov"
TARGETS = [
    ROOT / "examples/fraud_detection.py",
    ROOT / "examples/support_triage.py",
    *(
        PIPELINES / name
        for name in (
            "kitchen_sink.py",
            "namespaced.py",
            "two_pipelines.py",
            "with_environments.py",
            "yaml_booleans.py",
        )
    ),
]
# What the test fixtures are allowed, and why (the examples are allowed nothing): fixtures that
# exercise retagging run Triton from NVIDIA's image by tag (CKV_K8S_43: pin it with an
# environment's images= and require_digests=True, as the fraud example's prod does), and
# fixtures without a namespace leave it to `kubectl -n` / the Argo CD Application
# (CKV_K8S_21 reads that as the default namespace).
FIXTURE_ALLOWED = {"CKV_K8S_43", "CKV_K8S_21"}


def _require() -> None:
    for tool, how in ((KUBE_SCORE, "tools/build-go-tools.sh"), (CHECKOV, "tools/checkov.sh")):
        if not tool.exists():
            component_missing(f"{tool} is missing; run {how} (or tools/provision.sh)")


def built(target: Path, out: Path) -> dict[str, Path]:
    """Each deployable folder as kustomize builds it: name -> the built YAML."""
    from rtflow.verify.kustomize import kustomize_build

    pipelines = [p.build() for p in load_pipelines(str(target))[1]]
    bundle = compile_pipelines(pipelines)
    write_folder(bundle, out / "src")
    folders = {}
    for pipeline in pipelines:
        root = out / "src" / pipeline.name
        if pipeline.environments:
            for env in pipeline.environments:
                folders[f"{pipeline.name}/{env.name}"] = root / "overlays" / env.name
        else:
            folders[pipeline.name] = root
    result = {}
    for name, folder in folders.items():
        documents = kustomize_build(folder)
        path = out / f"{name.replace('/', '-')}.yaml"
        path.write_text("".join(f"---\n{json.dumps(d)}\n" for d in documents))
        result[name] = path
    return result


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.stem)
def test_no_kube_score_critical_and_no_failed_checkov_check(target: Path, tmp_path: Path) -> None:
    _require()
    for name, path in built(target, tmp_path).items():
        score = subprocess.run(
            [str(KUBE_SCORE), "score", str(path), "--output-format", "ci"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        critical = [line for line in score.stdout.splitlines() if line.startswith("[CRITICAL]")]
        assert critical == [], f"{name}: kube-score\n" + "\n".join(critical)
        scan = subprocess.run(
            [str(CHECKOV), "-f", str(path), "--framework", "kubernetes", "--quiet", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert scan.returncode in (0, 1), scan.stderr[-2000:]
        reports = json.loads(scan.stdout) if scan.stdout.strip() else []
        reports = reports if isinstance(reports, list) else [reports]
        allowed = FIXTURE_ALLOWED if target.is_relative_to(PIPELINES) else set()
        failed = [
            f"{c['check_id']} {c['resource']}: {c['check_name']}"
            for report in reports
            if isinstance(report, dict)
            for c in report.get("results", {}).get("failed_checks", [])
            if c["check_id"] not in allowed
        ]
        assert failed == [], f"{name}: checkov\n" + "\n".join(failed)


def test_the_scanners_see_a_problem_when_there_is_one(tmp_path: Path) -> None:
    """The same commands on a Deployment with the defects they look for: both complain, so an
    empty report above means clean, not unread."""
    _require()
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n"
        "  selector: {matchLabels: {app: bad}}\n  template:\n"
        "    metadata: {labels: {app: bad}}\n"
        "    spec:\n      containers:\n      - name: c\n        image: nginx:1.27\n"
    )
    score = subprocess.run(
        [str(KUBE_SCORE), "score", str(bad), "--output-format", "ci"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "[CRITICAL]" in score.stdout
    scan = subprocess.run(
        [str(CHECKOV), "-f", str(bad), "--framework", "kubernetes", "--quiet", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(scan.stdout)
    report = report[0] if isinstance(report, list) else report
    ids = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert {"CKV_K8S_15", "CKV_K8S_43", "CKV_K8S_22"} <= ids
