"""``rtflow submit`` where no real peer runs yet: a Workflow's phases under ``--wait`` (no Argo
controller runs beside the real API server yet) and the Argo Server path; and the errors that
need no server (no kubeconfig, nothing listening).

What the real API server answers (apply, the Workflow created, 401, 403, missing CRDs) is tested
against it in tests/integration/test_submit_real.py. ``StubServer`` here is a mock, not a
Kubernetes API server or Argo Server: it listens on loopback only, answers each request from a
fixed route table, records what it was sent, and is shut down after each test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from compiled import PIPELINES, ROOT

TARGET = f"{PIPELINES / 'two_pipelines.py'}:ingest"
Route = Callable[[str, str, Any], tuple[int, Any]]


class StubServer:
    """A stub HTTP server on 127.0.0.1 that answers from ``route`` and records requests."""

    def __init__(self, route: Route) -> None:
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                stub.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body,
                        "headers": dict(self.headers),
                    }
                )
                status, answer = route(self.command, self.path, body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 5
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def stub_factory() -> Iterator[Callable[[Route], StubServer]]:
    servers: list[StubServer] = []

    def make(route: Route) -> StubServer:
        servers.append(StubServer(route))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "stub",
                "clusters": [{"name": "stub", "cluster": {"server": server}}],
                "users": [{"name": "stub", "user": {"token": "kube-token"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}],
            }
        )
    )
    return path


def submit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "submit", TARGET, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBERNETES_SERVICE_HOST": "", **(env or {})},
    )


def cluster(phases: list[str]) -> Route:
    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "PATCH":
            return 200, body
        if method == "POST" and path.endswith("/workflows"):
            return 201, {**body, "metadata": {"name": "ingest-abc12", "namespace": "ml"}}
        if method == "GET" and path.endswith("/workflows/ingest-abc12"):
            phase = phases.pop(0) if len(phases) > 1 else phases[0]
            return 200, {"metadata": {"name": "ingest-abc12"}, "status": {"phase": phase}}
        return 404, {"kind": "Status", "reason": "NotFound", "message": "no route"}

    return route


def test_apply_then_create_and_wait(tmp_path: Path, stub_factory: Any) -> None:
    stub = stub_factory(cluster(["Running", "Succeeded"]))
    config = kubeconfig(tmp_path, stub.url)
    result = submit(
        "--kubeconfig",
        str(config),
        "-n",
        "ml",
        "-p",
        "url=https://x",
        "--wait",
        env={"RTFLOW_SUBMIT_POLL": "0"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ingest-abc12\n"
    patches = [r for r in stub.requests if r["method"] == "PATCH"]
    assert [r["path"].split("?")[0] for r in patches] == [
        "/api/v1/namespaces/ml/serviceaccounts/ingest-workflow",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ml/roles/ingest-workflow",
        "/apis/rbac.authorization.k8s.io/v1/namespaces/ml/rolebindings/ingest-workflow",
        "/apis/networking.k8s.io/v1/namespaces/ml/networkpolicies/ingest-default-deny",
        "/apis/networking.k8s.io/v1/namespaces/ml/networkpolicies/ingest-workflow",
        "/apis/argoproj.io/v1alpha1/namespaces/ml/workflowtemplates/ingest",
    ]
    for request in patches:
        assert request["path"].endswith("?fieldManager=rtflow&force=true")
        assert request["headers"]["Content-Type"] == "application/apply-patch+yaml"
        assert request["headers"]["Authorization"] == "Bearer kube-token"
        assert request["body"]["metadata"]["namespace"] == "ml"
    (create,) = [r for r in stub.requests if r["method"] == "POST"]
    assert create["path"] == "/apis/argoproj.io/v1alpha1/namespaces/ml/workflows"
    assert create["body"]["spec"] == {
        "workflowTemplateRef": {"name": "ingest"},
        "arguments": {"parameters": [{"name": "url", "value": "https://x"}]},
    }
    assert create["body"]["metadata"]["generateName"] == "ingest-"
    assert "ingest-abc12: Succeeded" in result.stderr


def test_wait_exits_1_when_the_workflow_fails(tmp_path: Path, stub_factory: Any) -> None:
    stub = stub_factory(cluster(["Failed"]))
    result = submit("--kubeconfig", str(kubeconfig(tmp_path, stub.url)), "-p", "url=u", "--wait")
    assert result.returncode == 1, result.stderr


def test_params_are_checked_against_the_template(tmp_path: Path) -> None:
    unknown = submit("-p", "nope=1")
    assert unknown.returncode == 2 and "has no parameter 'nope'" in unknown.stderr
    missing = submit()
    assert missing.returncode == 2 and "needs --param url=VALUE" in missing.stderr
    assert submit("-p", "novalue").returncode == 2


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert text in result.stderr


def test_missing_kubeconfig(tmp_path: Path) -> None:
    result = submit(
        "-p", "url=u", env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    )
    one_line_error(result, "no kubeconfig at")


def test_unreachable_server(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = kubeconfig(tmp_path, f"http://127.0.0.1:{port}")
    one_line_error(
        submit("--kubeconfig", str(config), "-p", "url=u"), "cannot reach the Kubernetes API"
    )


def test_argo_server_path(stub_factory: Any) -> None:
    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "POST" and path == "/api/v1/workflows/ml/submit":
            return 200, {"metadata": {"name": "ingest-xyz"}}
        if path == "/api/v1/workflows/ml/ingest-xyz":
            return 200, {"status": {"phase": "Succeeded"}}
        return 404, {"message": "no route"}

    stub = stub_factory(route)
    result = submit(
        "--argo-server",
        stub.url,
        "--token-env",
        "ARGO_TOKEN",
        "-n",
        "ml",
        "-p",
        "url=https://x",
        "--wait",
        env={"ARGO_TOKEN": "argo-token"},
    )
    assert result.returncode == 0, result.stderr
    create = stub.requests[0]
    assert create["headers"]["Authorization"] == "Bearer argo-token"
    assert create["body"] == {
        "namespace": "ml",
        "resourceKind": "WorkflowTemplate",
        "resourceName": "ingest",
        "submitOptions": {
            "parameters": ["url=https://x"],
            "labels": "app.kubernetes.io/managed-by=rtflow",
        },
    }
    assert not any(r["method"] == "PATCH" for r in stub.requests)
    no_token = submit("--argo-server", stub.url, "--token-env", "UNSET_VAR_X", "-p", "url=u")
    one_line_error(no_token, "--token-env")


def test_env_applies_what_the_overlay_builds_in_its_namespace(
    tmp_path: Path, stub_factory: Any
) -> None:
    def route(method: str, path: str, body: Any) -> tuple[int, Any]:
        if method == "PATCH":
            return 200, body
        if method == "POST" and path.endswith("/workflows"):
            return 201, {**body, "metadata": {"name": "fraud-detection-x1", "namespace": "fraud"}}
        return 404, {"kind": "Status", "reason": "NotFound", "message": "no route"}

    stub = stub_factory(route)
    result = subprocess.run(
        [
            sys.executable, "-m", "rtflow.cli", "submit", "examples/fraud_detection.py",
            "--env", "kind", "--kubeconfig", str(kubeconfig(tmp_path, stub.url)),
            "-p", 'transaction={"id": "t-1", "type": "purchase", "amount": 5}',
            # The workflow plane runs what the stream workers hand off, with their outputs.
            "-p", "compute-features-result=[1.6, 0, 0, 1, 0]", "-p", "decide-risk=0.97",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "KUBERNETES_SERVICE_HOST": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    patches = {r["path"].split("?")[0]: r["body"] for r in stub.requests if r["method"] == "PATCH"}
    assert all("/namespaces/fraud/" in path for path in patches)
    triton = patches["/apis/apps/v1/namespaces/fraud/deployments/fraud-triton"]
    (container,) = triton["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "localhost/rtflow/tritonserver-cpu:2.51.0"
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    kinds = [path.split("/")[-2] for path in patches]
    # Applied in sync-wave order: identities, then Triton, the template, what starts it.
    assert kinds.index("serviceaccounts") < kinds.index("deployments")
    assert kinds.index("deployments") < kinds.index("workflowtemplates") < kinds.index("sensors")
    (create,) = [r for r in stub.requests if r["method"] == "POST"]
    assert create["path"] == "/apis/argoproj.io/v1alpha1/namespaces/fraud/workflows"
    both = submit("--env", "a", "--env", "b", "-p", "url=u")
    assert both.returncode == 2 and "pick one" in both.stderr
