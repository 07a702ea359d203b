"""``rtflow submit --wait`` as a user runs it, against Argo's real workflow-controller: the CLI
applies the compiled support-triage example (every object of its base, server-side) into a
namespace the controller manages, creates the Workflow, and watches it while the controller runs
it, its pods played by the pod runner (rtflow.testing.execution, as in
test_execution_support.py). Nothing here writes a Workflow's phase: the controller does.

``-n`` puts the pipeline in another namespace than the one it names (``support``, where
test_execution_support.py's own controller runs): its pods' Argo executor writes each step's
WorkflowTaskResult with the pipeline's ServiceAccount token, so the RoleBinding applied with
it must name that account where it now lives.

What only a test that writes the phase itself can make happen (a watch the server ends, or
whose version it expires, right after the final phase) stays in test_submit_real.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import execution_harness as fx
import pytest
import yaml
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.execution import ExecutionPlane
from rtflow.testing.netns import NamespaceUnavailable

pytestmark = pytest.mark.integration

SUPPORT = str(fx.EXAMPLES / "support_triage.py")
NAMESPACE = "support-submit-wait"
REGISTRY = "ghcr.io/acme/support"
INGEST = str(fx.ROOT / "tests" / "pipelines" / "two_pipelines.py") + ":ingest"


@pytest.fixture(scope="module")
def execution(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ExecutionPlane]:
    """A controller managing NAMESPACE, and the pod runner with the example's images; the
    Secrets its containers read (a cluster's operators create those, not rtflow)."""
    images = {
        f"{REGISTRY}/classifier": fx.python_image(),
        f"{REGISTRY}/router": fx.stand_in_image("/router"),
        f"{REGISTRY}/pager": fx.stand_in_image("/pager"),
    }
    # The two containers have no command: Argo's `images` setting names their entrypoints.
    config = {"images": yaml.safe_dump({
        f"{REGISTRY}/router:1.3.0": {"entrypoint": ["/router"]},
        f"{REGISTRY}/pager:2.0.1": {"entrypoint": ["/pager"]},
    })}  # fmt: skip
    plane = ExecutionPlane(
        control_plane, NAMESPACE, images, controller_config=config,
        work_dir=tmp_path_factory.mktemp("submit-wait"),
    )  # fmt: skip
    try:
        plane.start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        control_plane.apply(
            [
                {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                 "stringData": {key: "s3cret"}}
                for name, key in (("helpdesk-api", "token"), ("pager", "routing-key"))
            ],
            namespace=NAMESPACE,
        )  # fmt: skip
        plane.prepare_namespace([])
        yield plane
    finally:
        plane.close()


def submit_wait(
    plane: ControlPlane, tmp_path: Path, ticket: object
) -> subprocess.CompletedProcess[str]:
    """``rtflow submit examples/support_triage.py -n NAMESPACE --wait``, as a user types it."""
    config = plane.kubeconfig(tmp_path / "kubeconfig")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "KUBERNETES_SERVICE_HOST": ""}
    return subprocess.run(
        [
            sys.executable, "-m", "rtflow.cli", "submit", SUPPORT, "--kubeconfig", str(config),
            "-n", NAMESPACE, "-p", f"ticket={json.dumps(ticket)}", "-p", "mode=live",
            "--wait", "--timeout", "300", "--format", "json",
        ],
        cwd=fx.ROOT, capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, **env},
    )  # fmt: skip


def progress(result: subprocess.CompletedProcess[str]) -> tuple[str, list[str]]:
    """The Workflow's name and the progress ``--wait`` printed for it, in order: each phase,
    Failed and Error with why (``Failed: <the controller's message>; <step>: <its own>``)."""
    (submitted,) = [
        line for line in result.stderr.splitlines() if line.startswith("rtflow: submitted ")
    ]
    assert submitted == f"rtflow: submitted workflow {NAMESPACE}/{submitted.rsplit('/', 1)[1]}"
    name = submitted.rsplit("/", 1)[1]
    prefix = f"rtflow: {name}: "
    phases = [line[len(prefix) :] for line in result.stderr.splitlines()
              if line.startswith(prefix)]  # fmt: skip
    return name, phases


def test_wait_exits_0_when_the_controller_runs_the_workflow_to_succeeded(
    execution: ExecutionPlane, tmp_path: Path
) -> None:
    result = submit_wait(execution.plane, tmp_path, {"subject": "login", "body": "no access"})
    assert result.returncode == 0, result.stderr
    name, phases = progress(result)
    # Pending is printed when the list comes before the controller's first write (it
    # usually does: the controller takes about a second), then each phase as it changes.
    assert phases in (["Pending", "Running", "Succeeded"], ["Running", "Succeeded"]), phases
    assert json.loads(result.stdout) == {"namespace": NAMESPACE, "name": name,
                                         "phase": "Succeeded"}  # fmt: skip
    # The controller ran it: classify in its pod, the route stand-in with what it decided.
    wf = execution.workflow(name)
    assert wf["status"]["phase"] == "Succeeded", _nodes(wf)
    (classified,) = fx.by_name(wf, "classify")
    assert classified["type"] == "Pod" and classified["phase"] == "Succeeded"
    (routed,) = fx.stand_in_calls(execution, name, "/router")
    assert routed["args"] == ["--queue", "technical", "--urgency", "0.2"]


def test_wait_exits_1_when_a_stage_fails(execution: ExecutionPlane, tmp_path: Path) -> None:
    """A ticket that is not an object: classify's runtime exits 65 (a bad input), no retry is
    compiled for it, the controller fails the Workflow; submit says so, and which step, and
    exits 1."""
    result = submit_wait(execution.plane, tmp_path, [1])
    assert result.returncode == 1, result.stderr
    name, phases = progress(result)
    assert phases[-2] == "Running", phases
    assert phases[-1] == "Failed: classify: main: Error (exit code 65)", phases
    assert json.loads(result.stdout) == {"namespace": NAMESPACE, "name": name, "phase": "Failed"}
    wf = execution.workflow(name)
    assert wf["status"]["phase"] == "Failed", _nodes(wf)
    (classified,) = fx.by_name(wf, "classify")
    assert classified["phase"] == "Failed" and classified["outputs"]["exitCode"] == "65"
    assert fx.stand_in_calls(execution, name, "/router") == []


def test_wait_exits_1_when_the_controller_errors_the_workflow(
    execution: ExecutionPlane, tmp_path: Path
) -> None:
    """Error is the controller's own failure, not a step's: here, a Workflow whose template is
    not in the namespace (``--no-apply``, and nothing applied ``ingest`` there)."""
    config = execution.plane.kubeconfig(tmp_path / "kubeconfig")
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache"), "KUBERNETES_SERVICE_HOST": ""}
    result = subprocess.run(
        [
            sys.executable, "-m", "rtflow.cli", "submit", INGEST, "--kubeconfig", str(config),
            "-n", NAMESPACE, "-p", "url=u", "--no-apply", "--wait", "--timeout", "300",
        ],
        cwd=fx.ROOT, capture_output=True, text=True, timeout=400, check=False,
        env={**os.environ, **env},
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    name, phases = progress(result)
    assert phases[-1] == 'Error: workflowtemplates.argoproj.io "ingest" not found', phases
    assert result.stdout.strip() == name
    wf = execution.workflow(name)
    assert wf["status"]["phase"] == "Error"
    assert wf["status"]["message"] == 'workflowtemplates.argoproj.io "ingest" not found'


def _nodes(wf: dict[str, Any]) -> dict[str, str]:
    return {n["displayName"]: n["phase"] for n in fx.nodes(wf)}
