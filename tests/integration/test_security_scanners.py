"""What a cluster receives passes the scanners a platform team runs (issue #13): every compiled
example and test pipeline, each environment built with the real kustomize (the base when it
declares none), has no failed checkov Kubernetes check and no kube-score CRITICAL. The test
pipelines are held to it as the examples are: each names its namespace and pins by digest the
images of the Deployments checkov reads, as a user should (tests/pipelines/namespaced.py pins
rtflow's own gRPC client image through a mirror, under require_digests).

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
from compiled import ROOT
from components import component_missing
from deployables import TARGETS, built

pytestmark = pytest.mark.integration

TOOLS = ROOT / ".tools"
KUBE_SCORE = TOOLS / "bin" / "kube-score"
CHECKOV = TOOLS / "checkov-venv" / "bin" / "checkov"
# Examples and test pipelines alike: no failed check is allowed. The only skips are the
# annotations the compiler writes where a check cannot apply (counted below): an image loaded
# into kind's nodes is never pulled and has no registry digest (CKV_K8S_15, CKV_K8S_43).


def _require() -> None:
    for tool, how in ((KUBE_SCORE, "tools/build-go-tools.sh"), (CHECKOV, "tools/checkov.sh")):
        if not tool.exists():
            component_missing(f"{tool} is missing; run {how} (or tools/provision.sh)")


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
        results = [r.get("results", {}) for r in reports if isinstance(r, dict)]
        failed = [
            f"{c['check_id']} {c['resource']}: {c['check_name']}"
            for result in results
            for c in result.get("failed_checks", [])
        ]
        assert failed == [], f"{name}: checkov\n" + "\n".join(failed)
        summaries = [r.get("summary", {}) for r in reports if isinstance(r, dict)]
        assert all(s.get("parsing_errors", 0) == 0 for s in summaries), f"{name}: {summaries}"
        skipped = {c["check_id"] for r in results for c in r.get("skipped_checks", [])}
        assert skipped <= {"CKV_K8S_15", "CKV_K8S_43"}, f"{name}: skipped {skipped}"


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
    # Pull policy, image by tag (not digest), writable root, and no namespace (the default one).
    assert {"CKV_K8S_15", "CKV_K8S_43", "CKV_K8S_22", "CKV_K8S_21"} <= ids
