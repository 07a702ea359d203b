"""``rtflow submit`` where no real peer can run: the Argo Server path (against a mock), and what
needs no server at all (parameters, the environment, no kubeconfig, nothing listening).

The Kubernetes path is tested against the real API server in
tests/integration/test_submit_real.py. No real Argo Server runs here yet: ``argo server``
embeds the UI's build (``ui/dist/app``), which the Go module does not ship, so it does not build
from the module as tools/argo-lint does (a vendored copy with a placeholder UI, as
tools/argoexec restores a symlink, would be the way). ``MockArgoServer`` stands in for it: a
loopback HTTP server that answers the two calls rtflow makes (submit, get a Workflow) from a
fixed table, records what it was sent, and is shut down after each test.
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

from rtflow.submit import SubmitError, installer, parse_params, workflow

TARGET = f"{PIPELINES / 'two_pipelines.py'}:ingest"


class MockArgoServer:
    """A mock of the Argo Server's two endpoints rtflow calls, on 127.0.0.1."""

    def __init__(self, phases: list[str], *, status: int = 200) -> None:
        self.requests: list[dict[str, Any]] = []
        mock = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                mock.requests.append(
                    {"method": self.command, "path": self.path, "body": body,
                     "headers": dict(self.headers)}
                )  # fmt: skip
                code, answer = mock.route(self.command, self.path)
                data = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.phases, self.status = phases, status
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def route(self, method: str, path: str) -> tuple[int, Any]:
        if self.status != 200:
            return self.status, {"code": 16, "message": "token not valid"}
        if method == "POST" and path == "/api/v1/workflows/ml/submit":
            return 200, {"metadata": {"name": "ingest-xyz", "namespace": "ml"}}
        if method == "GET" and path == "/api/v1/workflows/ml/ingest-xyz":
            phase = self.phases.pop(0) if len(self.phases) > 1 else self.phases[0]
            return 200, {"metadata": {"name": "ingest-xyz"}, "status": {"phase": phase}}
        return 404, {"code": 5, "message": "no route"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def argo_server() -> Iterator[Callable[..., MockArgoServer]]:
    servers: list[MockArgoServer] = []

    def make(phases: list[str], **kwargs: Any) -> MockArgoServer:
        servers.append(MockArgoServer(phases, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def submit(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "submit", TARGET, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBERNETES_SERVICE_HOST": "", **(env or {})},
    )


def one_line_error(result: subprocess.CompletedProcess[str], text: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert text in result.stderr


def through_argo(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return submit(
        "--argo-server", url, "--token-env", "ARGO_TOKEN", "-n", "ml", "-p", "url=https://x",
        *args, env={"ARGO_TOKEN": "argo-token"},
    )  # fmt: skip


# -- the Argo Server path (mock) ------------------------------------------------------------------


def test_argo_server_submits_from_the_template(argo_server: Any) -> None:
    server = argo_server(["Running", "Succeeded"])
    result = through_argo(server.url, "--wait")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ingest-xyz\n"
    create = server.requests[0]
    assert create["path"] == "/api/v1/workflows/ml/submit"
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
    assert "ingest-xyz: Succeeded" in result.stderr
    assert all(r["method"] in ("POST", "GET") for r in server.requests)  # nothing applied


def test_argo_server_wait_exits_1_when_the_workflow_fails(argo_server: Any) -> None:
    result = through_argo(argo_server(["Failed"]).url, "--wait", "--format", "json")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout) == {"namespace": "ml", "name": "ingest-xyz", "phase": "Failed"}


def test_argo_server_refusals_are_one_line(argo_server: Any) -> None:
    refused = through_argo(argo_server(["Succeeded"], status=401).url)
    one_line_error(refused, "unauthorized (401): token not valid; check the token and its RBAC")
    no_token = submit(
        "--argo-server", "http://127.0.0.1:1", "--token-env", "UNSET_X", "-p", "url=u"
    )
    one_line_error(no_token, "--token-env")


# -- no server needed -----------------------------------------------------------------------------


TEMPLATE = {
    "metadata": {"name": "t"},
    "spec": {"arguments": {"parameters": [{"name": "url"}, {"name": "mode", "value": "live"}]}},
}


def test_params_are_checked_against_the_template() -> None:
    assert parse_params(["url=a=b"], TEMPLATE) == {"url": "a=b"}
    assert parse_params(["url=", "mode=sweep"], TEMPLATE) == {"url": "", "mode": "sweep"}
    for pairs, text in [
        (
            ["nope=1", "url=u"],
            "WorkflowTemplate 't' has no parameter 'nope' (it has ['mode', 'url'])",
        ),
        ([], "WorkflowTemplate 't' needs --param url=VALUE"),
        (["novalue"], "--param 'novalue' is not NAME=VALUE"),
        (["=x"], "--param '=x' is not NAME=VALUE"),
    ]:
        with pytest.raises(SubmitError) as raised:
            parse_params(pairs, TEMPLATE)
        assert str(raised.value) == text
    # Through the command line: exit 2, before any server is asked.
    unknown = submit("-p", "nope=1")
    assert unknown.returncode == 2 and "has no parameter 'nope'" in unknown.stderr


def test_the_workflow_refers_to_its_template() -> None:
    assert workflow("ingest", {"b": "2", "a": "1"}) == {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": "ingest-",
            "labels": {"app.kubernetes.io/managed-by": "rtflow"},
        },
        "spec": {
            "workflowTemplateRef": {"name": "ingest"},
            "arguments": {"parameters": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}]},
        },
    }
    assert "arguments" not in workflow("ingest", {})["spec"]


def test_what_installs_a_missing_kind() -> None:
    assert installer("argoproj.io/v1alpha1", "WorkflowTemplate") == "Argo Workflows"
    assert installer("argoproj.io/v1alpha1", "Sensor") == "Argo Events"
    assert installer("argoproj.io/v1alpha1", "Application") == "Argo CD"
    assert installer("keda.sh/v1alpha1", "ScaledObject") == "KEDA"
    assert installer("apps/v1", "Deployment") is None


def test_one_environment_only() -> None:
    both = submit("--env", "a", "--env", "b", "-p", "url=u")
    one_line_error(both, "pick one")


def test_missing_kubeconfig(tmp_path: Path) -> None:
    result = submit(
        "-p", "url=u", env={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}
    )
    one_line_error(result, f"no kubeconfig at {tmp_path / 'none'} and not running in a cluster")


def test_a_server_that_does_not_answer(tmp_path: Path) -> None:
    """Nothing listens on the port the kubeconfig names."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "kubeconfig"
    config.write_text(
        json.dumps(
            {
                "apiVersion": "v1", "kind": "Config", "current-context": "c",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            }
        )
    )  # fmt: skip
    result = submit(
        "--kubeconfig", str(config), "-p", "url=u", env={"XDG_CACHE_HOME": str(tmp_path)}
    )
    one_line_error(result, f"cannot reach the Kubernetes API at https://127.0.0.1:{port}")
