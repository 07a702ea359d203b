"""``rtflow submit`` against the real API server (rtflow.testing.control_plane: etcd and
kube-apiserver with the upstream CRDs): discovery, server-side apply, the Workflow created,
``--wait``'s watch, and every refusal the server makes.

No Argo controller runs here: ``--wait`` against the real workflow-controller (Succeeded exits
0; Failed by a failing stage, and Error, exit 1) is test_submit_wait_real.py. What only a test
that writes the Workflow's ``status.phase`` itself can make happen stays here: a watch the
server ends, or whose resourceVersion it expires, right after the final phase. The test writes
the phase through the API (the Workflow CRD has no status subresource, so a merge patch of the
object is how the controller writes it too); the watch, its resourceVersions and the events
are the real server's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from compiled import PIPELINES, ROOT

from rtflow import submit as rtflow_submit
from rtflow.testing.control_plane import ControlPlane

pytestmark = pytest.mark.integration

FRAUD = str(ROOT / "examples" / "fraud_detection.py")
FRAUD_PARAMS = [
    "-p",
    "compute-features-result={}",
    "-p",
    "decide-risk=high",
    "-p",
    "transaction={}",
]
INGEST = f"{PIPELINES / 'two_pipelines.py'}:ingest"


def environment(tmp_path: Path) -> dict[str, str]:
    # A discovery cache of this test's own, and no in-cluster fallback.
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "KUBERNETES_SERVICE_HOST": ""}


def submit(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "submit", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=environment(tmp_path),
    )


def one_line_error(result: subprocess.CompletedProcess[str], *texts: str) -> str:
    assert result.returncode == 2, result.stderr
    line = result.stderr
    assert line.count("\n") == 1 and "Traceback" not in line, line
    for text in texts:
        assert text in line, line
    return line


def namespace(plane: ControlPlane, name: str) -> str:
    plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    return name


def objects(plane: ControlPlane, api_version: str, kind: str, ns: str) -> list[dict[str, Any]]:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(plane.api_client())  # type: ignore[no-untyped-call]
    resource = dynamic.resources.get(api_version=api_version, kind=kind)
    return list(dynamic.get(resource, namespace=ns).to_dict()["items"])


def set_phase(plane: ControlPlane, ns: str, name: str, phase: str) -> None:
    """What the workflow controller does: write the Workflow's status."""
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(plane.api_client())  # type: ignore[no-untyped-call]
    resource = dynamic.resources.get(api_version="argoproj.io/v1alpha1", kind="Workflow")
    dynamic.patch(
        resource,
        name=name,
        namespace=ns,
        body={"status": {"phase": phase}},
        content_type="application/merge-patch+json",
    )


# -- apply and create ---------------------------------------------------------------------------


def test_env_applies_the_overlay_in_its_namespace_and_creates_a_workflow(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = control_plane.kubeconfig(tmp_path / "kubeconfig")
    namespace(control_plane, "fraud")
    result = submit(
        tmp_path, FRAUD, "--env", "kind", "--kubeconfig", str(config), "--format", "json",
        *FRAUD_PARAMS,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    submitted = json.loads(result.stdout)
    assert submitted == {"namespace": "fraud", "name": submitted["name"], "phase": None}
    workflows = objects(control_plane, "argoproj.io/v1alpha1", "Workflow", "fraud")
    (created,) = [w for w in workflows if w["metadata"]["name"] == submitted["name"]]
    assert created["spec"]["workflowTemplateRef"] == {"name": "fraud-detection"}
    given = {p["name"]: p["value"] for p in created["spec"]["arguments"]["parameters"]}
    assert given == {"compute-features-result": "{}", "decide-risk": "high", "transaction": "{}"}
    # The kind overlay's Triton: the CPU image, no GPU.
    (triton,) = [
        d for d in objects(control_plane, "apps/v1", "Deployment", "fraud")
        if d["metadata"]["name"] == "fraud-triton"
    ]  # fmt: skip
    (container,) = triton["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/rtflow/tritonserver-cpu:2.51.0"
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})
    (template,) = [
        t for t in objects(control_plane, "argoproj.io/v1alpha1", "WorkflowTemplate", "fraud")
        if t["metadata"]["name"] == "fraud-detection"
    ]  # fmt: skip
    assert "rtflow" in {m["manager"] for m in template["metadata"]["managedFields"]}
    # In a namespace of its own (-n), where nothing was applied before: every object applied
    # with rtflow's field manager, in sync-wave order: identities, then Triton, the template,
    # what starts it. (Each write takes the next etcd revision, which is what a new object's
    # resourceVersion is on this server.)
    fresh = namespace(control_plane, "submit-order")
    again = submit(
        tmp_path, FRAUD, "--env", "kind", "-n", fresh, "--kubeconfig", str(config), *FRAUD_PARAMS
    )
    assert again.returncode == 0, again.stderr
    first: dict[str, int] = {}
    for api_version, kind in [
        ("v1", "ServiceAccount"),
        ("apps/v1", "Deployment"),
        ("argoproj.io/v1alpha1", "WorkflowTemplate"),
        ("argoproj.io/v1alpha1", "Sensor"),
    ]:
        found = objects(control_plane, api_version, kind, fresh)
        assert found, kind
        for item in found:
            assert {m["manager"] for m in item["metadata"]["managedFields"]} == {"rtflow"}, item
        first[kind] = min(int(item["metadata"]["resourceVersion"]) for item in found)
    assert first["ServiceAccount"] < first["Deployment"] < first["WorkflowTemplate"]
    assert first["WorkflowTemplate"] < first["Sensor"]
    # Discovery is cached per server, for the next submit.
    (cache,) = (tmp_path / "cache" / "rtflow" / "discovery").glob("*.json")
    assert "workflowtemplates" in cache.read_text()


def test_params_and_namespace_reach_the_workflow(
    control_plane: ControlPlane, tmp_path: Path
) -> None:
    config = control_plane.kubeconfig(tmp_path / "kubeconfig")
    ns = namespace(control_plane, "submit-params")
    result = submit(tmp_path, INGEST, "--kubeconfig", str(config), "-n", ns, "-p", "url=https://x")
    assert result.returncode == 0, result.stderr
    name = result.stdout.strip()
    assert f"rtflow: submitted workflow {ns}/{name}" in result.stderr
    (created,) = objects(control_plane, "argoproj.io/v1alpha1", "Workflow", ns)
    assert created["metadata"]["name"] == name and name.startswith("ingest-")
    assert created["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "rtflow"}
    assert created["spec"] == {
        "workflowTemplateRef": {"name": "ingest"},
        "arguments": {"parameters": [{"name": "url", "value": "https://x"}]},
    }
    (template,) = objects(control_plane, "argoproj.io/v1alpha1", "WorkflowTemplate", ns)
    assert template["metadata"]["name"] == "ingest"
    # The pipeline names namespace ml; -n moved its ServiceAccount, and its binding with it.
    (binding,) = objects(control_plane, "rbac.authorization.k8s.io/v1", "RoleBinding", ns)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "ingest-workflow", "namespace": ns}
    ]
    # --no-apply only creates the Workflow: in a namespace with nothing applied, nothing else.
    bare = namespace(control_plane, "submit-no-apply")
    again = submit(
        tmp_path, INGEST, "--kubeconfig", str(config), "-n", bare, "-p", "url=u", "--no-apply"
    )
    assert again.returncode == 0, again.stderr
    assert objects(control_plane, "argoproj.io/v1alpha1", "WorkflowTemplate", bare) == []
    assert len(objects(control_plane, "argoproj.io/v1alpha1", "Workflow", bare)) == 1


# -- --wait --------------------------------------------------------------------------------------


def test_wait_gives_up_at_its_timeout(control_plane: ControlPlane, tmp_path: Path) -> None:
    """Nothing moves the Workflow here: --timeout ends the watch with one line."""
    config = control_plane.kubeconfig(tmp_path / "kubeconfig")
    ns = namespace(control_plane, "submit-wait-timeout")
    result = submit(
        tmp_path, INGEST, "--kubeconfig", str(config), "-n", ns, "-p", "url=u",
        "--wait", "--timeout", "1",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        "rtflow: error: the workflow is still Pending after 1s (--timeout)"
    )


@pytest.fixture
def kube(control_plane: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    config = control_plane.kubeconfig(tmp_path / "kubeconfig")
    client = rtflow_submit.Kubernetes.from_kubeconfig(str(config), None)
    yield client
    client.close()


@pytest.mark.parametrize("ending", ["expired", "closed"])
def test_wait_recovers_when_the_watch_ends(
    control_plane: ControlPlane, kube: Any, ending: str
) -> None:
    """The server ends a watch (its timeout, a restart) or expires its resourceVersion (410
    Gone): the first watch here ends so, once, right after the controller wrote the final
    phase; the wait must still see it, by watching again from the last version seen, or by
    listing again after a 410. The list, the second watch and the phases are the server's."""
    from kubernetes.client.exceptions import ApiException

    ns = namespace(control_plane, f"submit-watch-{ending}")
    name = kube.create_workflow("ingest", {"url": "u"}, ns)
    real_watch = kube.dynamic.watch
    calls: list[str | None] = []

    def watch(*args: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
        calls.append(kwargs["resource_version"])
        if len(calls) == 1:
            set_phase(control_plane, ns, name, "Succeeded")
            if ending == "expired":
                raise ApiException(status=410, reason="Expired: too old resource version")
            return iter(())
        return iter(real_watch(*args, **kwargs))

    kube.dynamic.watch = watch
    seen: list[str] = []
    assert kube.wait(name, ns, timeout=60, report=seen.append) == "Succeeded"
    assert seen == ["Pending", "Succeeded"]
    if ending == "closed":  # watched again from where the first watch started
        assert len(calls) == 2 and calls[1] == calls[0]
    else:  # listed again: the list saw the end, no second watch
        assert calls == calls[:1]


# -- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who", "word"), [("stranger", "unauthorized (401)"), ("nobody", "forbidden (403)")]
)
def test_refusals_are_one_line(
    control_plane: ControlPlane, tmp_path: Path, who: str, word: str
) -> None:
    """A token the server does not know (401), and a user it knows whom no RBAC rule names."""
    token = "not-a-token" if who == "stranger" else control_plane.unprivileged_token
    config = control_plane.kubeconfig(tmp_path / "kubeconfig", token)
    result = submit(tmp_path, FRAUD, "--env", "kind", "--kubeconfig", str(config), *FRAUD_PARAMS)
    one_line_error(result, word, control_plane.server, "check the credentials and their RBAC")


def test_a_missing_namespace_is_named(control_plane: ControlPlane, tmp_path: Path) -> None:
    config = control_plane.kubeconfig(tmp_path / "kubeconfig")
    result = submit(
        tmp_path, INGEST, "--kubeconfig", str(config), "-n", "no-such-ns", "-p", "url=u"
    )
    one_line_error(result, "namespace 'no-such-ns' does not exist; create it first")


def test_the_server_rejects_an_unknown_field_in_one_line(
    control_plane: ControlPlane, kube: Any
) -> None:
    """A field the CRD's schema does not declare is refused, not silently dropped (server-side
    apply builds a typed patch; the server answers 500 for it), and the answer is one line."""
    ns = namespace(control_plane, "submit-strict")
    template = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "typo"},
        "spec": {"entrypoint": "main", "templates": [{"name": "main", "suspend": {}}],
                 "paralelism": 2},
    }  # fmt: skip
    with pytest.raises(rtflow_submit.SubmitError) as raised:
        kube.apply([template], ns)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"Kubernetes API {control_plane.server}: apply WorkflowTemplate/typo: ")
    assert ".spec.paralelism: field not declared in schema" in text


def test_a_cluster_without_the_crds_names_what_installs_them(tmp_path: Path) -> None:
    """On a server with no CRD: the first kind it does not serve is named with what installs
    it. Discovery is cached, so a CRD installed since is found (a kind missing from the cache
    makes the client discover again), and one removed since is named too (the cache still has
    it; the server answers 404)."""
    from components import component_missing
    from kubernetes import client

    from rtflow.testing.control_plane import ControlPlaneUnavailable, default_crd_files

    try:
        bare = ControlPlane().start()  # no CRD installed
    except ControlPlaneUnavailable as exc:
        component_missing(str(exc))
    try:
        namespace(bare, "fraud")
        config = bare.kubeconfig(tmp_path / "kubeconfig")
        overlay = submit(
            tmp_path, FRAUD, "--env", "kind", "--kubeconfig", str(config), *FRAUD_PARAMS
        )
        create = [INGEST, "--kubeconfig", str(config), "-n", "default", "-p", "url=u", "--no-apply"]
        before = submit(tmp_path, *create)
        (crd,) = [f for f in default_crd_files() if f.name == "argoproj.io_workflows.yaml"]
        bare.install_crds([crd])
        installed = submit(tmp_path, *create)
        extensions = client.ApiextensionsV1Api(bare.api_client())
        extensions.delete_custom_resource_definition("workflows.argoproj.io")
        for _ in range(1200):  # a hang guard, not a time limit under test
            names = [c.metadata.name for c in extensions.list_custom_resource_definition().items]
            if "workflows.argoproj.io" not in names:
                break  # removed once its Workflows are (the CRD's finalizer)
            time.sleep(0.1)
        removed = submit(tmp_path, *create)
    finally:
        bare.close()
    line = one_line_error(overlay, f"the Kubernetes API at {bare.server} does not serve ")
    assert "): its CRD is missing; install " in line and line.endswith(" first\n"), line
    missing = (
        f"the Kubernetes API at {bare.server} does not serve Workflow (argoproj.io/v1alpha1): "
        "its CRD is missing; install Argo Workflows first"
    )
    one_line_error(before, missing)
    assert installed.returncode == 0, installed.stderr
    one_line_error(removed, missing)
