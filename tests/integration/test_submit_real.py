"""`rtflow submit` against the real API server (rtflow.testing.control_plane): what the stub
in tests/test_submit.py answers, the real server answers here. No controller runs, so a
Workflow is created and stays Pending; following it to its end is the execution tier's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from compiled import ROOT

from rtflow.testing.control_plane import ControlPlane

pytestmark = pytest.mark.integration

FRAUD = str(ROOT / "examples" / "fraud_detection.py")
PARAMS = ["-p", "compute-features-result={}", "-p", "decide-risk=high", "-p", "transaction={}"]


def submit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "submit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def custom(plane: ControlPlane, namespace: str, plural: str) -> list[dict[str, Any]]:
    from kubernetes import client

    api = client.CustomObjectsApi(plane.api_client())
    items = api.list_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, plural)
    return list(items["items"])


def test_submit_applies_the_overlay_and_creates_a_workflow(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = control_plane.kubeconfig(tmp_path / "kubeconfig")
    control_plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fraud"}}])
    kind = ["--env", "kind", "--kubeconfig", str(config)]
    result = submit(FRAUD, *kind, "--format", "json", *PARAMS)
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted["namespace"] == "fraud"
    (workflow,) = [
        w for w in custom(control_plane, "fraud", "workflows")
        if w["metadata"]["name"] == submitted["name"]
    ]  # fmt: skip
    assert workflow["spec"]["workflowTemplateRef"]["name"] == "fraud-detection"
    given = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert given["decide-risk"] == "high"
    templates = [t["metadata"]["name"] for t in custom(control_plane, "fraud", "workflowtemplates")]
    assert "fraud-detection" in templates
    # Applied with rtflow's field manager, as the server records it.
    (template,) = [
        t for t in custom(control_plane, "fraud", "workflowtemplates")
        if t["metadata"]["name"] == "fraud-detection"
    ]  # fmt: skip
    assert {m["manager"] for m in template["metadata"]["managedFields"]} == {"rtflow"}


@pytest.mark.parametrize(
    ("who", "word"), [("stranger", "unauthorized (401)"), ("nobody", "forbidden (403)")]
)
def test_refusals_are_one_line(
    control_plane: ControlPlane, tmp_path: Path, who: str, word: str
) -> None:
    """A token the server does not know (401), and a user it knows whom no RBAC rule names."""
    token = "not-a-token" if who == "stranger" else control_plane.unprivileged_token
    config = control_plane.kubeconfig(tmp_path / "kubeconfig", token)
    result = submit(FRAUD, "--env", "kind", "--kubeconfig", str(config), *PARAMS)
    assert result.returncode == 2
    assert word in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_cluster_without_the_crds_is_named_in_one_line(tmp_path: Path) -> None:
    from components import component_missing

    from rtflow.testing.control_plane import ControlPlaneUnavailable

    try:
        bare = ControlPlane().start()  # no CRD installed
    except ControlPlaneUnavailable as exc:
        component_missing(str(exc))
    try:
        bare.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "fraud"}}])
        config = bare.kubeconfig(tmp_path / "kubeconfig")
        result = submit(FRAUD, "--env", "kind", "--kubeconfig", str(config), *PARAMS)
    finally:
        bare.close()
    assert result.returncode == 2
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert "resource (404 on " in line and "install " in line, line
