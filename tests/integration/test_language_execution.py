"""The language features on Argo's real workflow-controller (v4.1.4) and argoexec agent: an
approval with a timeout that nobody answers takes ``on_timeout`` (the controller's suspend
``duration`` and the output's ``valueFrom.default``), ``when``/``otherwise`` pick the branch,
and ``rtflow.http`` calls a real HTTP server through Argo's agent with a header the agent reads
from a real Secret, its JSON body assembled by Argo's substitution; the answer is the step's
``outputs.result``. The local run's copy of these rules is checked against the same pipeline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import execution_harness as fx
import pytest
from components import component_missing

import rtflow
from rtflow.generators.compiler import compile_pipelines
from rtflow.stages.approvals import ApprovalRequest, auto_reject
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.execution import ExecutionPlane
from rtflow.testing.netns import NamespaceUnavailable
from rtflow.testing.workflow_controller import resume

pytestmark = pytest.mark.integration

NAMESPACE = "language-execution"
HOOKS, HOOKS_PORT = "hooks", 18080
SECRET = "Bearer from-a-real-secret"
TIMEOUT = 6
CUSTOMER = 'Ada "the first" <programmer> & co\nline two'


def language_pipeline(base: str) -> rtflow.Pipeline:
    @rtflow.pipeline(name="lang-tier")
    def lang_tier(customer: str) -> None:
        review = rtflow.approval("review", timeout=TIMEOUT, on_timeout="approve")
        with rtflow.when(review.approved):
            rtflow.http(
                f"{base}/approved",
                method="POST",
                json={"customer": customer, "decision": review.decision, "n": [1, 2.5]},
                secret_headers={"Authorization": rtflow.SecretKey("hooks-api", "bearer")},
                success_status={200, 201},
                returns=dict[str, Any],
                name="notify-approved",
            )
        with rtflow.otherwise():
            rtflow.http(f"{base}/rejected", method="PUT", body=customer, name="notify-rejected")

    return lang_tier


class _Hooks(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def log_message(self, *args: Any) -> None:
        pass

    def _handle(self) -> None:
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        request = {"method": self.command, "path": self.path, "body": raw.decode(),
                   "headers": {k.lower(): v for k, v in self.headers.items()}}  # fmt: skip
        type(self).seen.append(request)
        status = 201 if self.headers.get("Authorization") == SECRET else 401
        if self.path == "/rejected":
            status = 200
        body = json.dumps({"got": request["body"], "path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = _handle


@pytest.fixture(scope="module")
def hooks() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Hooks", (_Hooks,), {"seen": seen}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(scope="module")
def execution(
    control_plane: ControlPlane,
    hooks: tuple[int, list[dict[str, Any]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ExecutionPlane]:
    port, _ = hooks
    plane = ExecutionPlane(control_plane, NAMESPACE, {}, work_dir=tmp_path_factory.mktemp("x"),
                           controller_env={"DEFAULT_REQUEUE_TIME": "1s"})  # fmt: skip
    try:
        plane.start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        plane.expose([HOOKS], HOOKS_PORT, ("127.0.0.1", port))
        pipeline = language_pipeline(f"http://{HOOKS}:{HOOKS_PORT}").build()
        bundle = compile_pipelines([pipeline])
        wanted = {"ServiceAccount", "Role", "RoleBinding", "Secret", "WorkflowTemplate"}
        documents = [dict(m.body) for m in bundle.manifests if m.kind in wanted]
        secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hooks-api"},
                  "stringData": {"bearer": SECRET}}  # fmt: skip
        control_plane.apply([*documents, secret], namespace=NAMESPACE)
        plane.prepare_namespace(["lang-tier-workflow"])
        yield plane
    finally:
        plane.close()


def _node(wf: dict[str, Any], name: str) -> dict[str, Any]:
    (node,) = [n for n in fx.nodes(wf) if n.get("displayName") == name]
    return node


def _wait(execution: ExecutionPlane, name: str) -> dict[str, Any]:
    wf = fx.wait_for(execution, name, fx.finished, timeout=180)
    assert fx.finished(wf), json.dumps(wf.get("status", {}), indent=1)[:3000]
    return wf


def test_an_unanswered_approval_times_out_to_on_timeout_and_the_agent_calls(
    execution: ExecutionPlane, hooks: tuple[int, list[dict[str, Any]]]
) -> None:
    _, seen = hooks
    seen.clear()
    started = time.monotonic()
    name = fx.create_workflow(execution.plane, NAMESPACE, "lang-tier", {"customer": CUSTOMER})
    wf = _wait(execution, name)
    assert wf["status"]["phase"] == "Succeeded", json.dumps(wf["status"], indent=1)[:3000]
    assert time.monotonic() - started >= TIMEOUT
    review = _node(wf, "review")
    assert review["phase"] == "Succeeded"
    decisions = {p["name"]: p.get("value") for p in review["outputs"]["parameters"]}
    assert decisions == {"decision": "approve"}  # nobody answered: on_timeout
    assert _node(wf, "notify-rejected")["phase"] == "Skipped"
    called = _node(wf, "notify-approved")
    assert called["phase"] == "Succeeded"
    (request,) = [r for r in seen if r["path"] == "/approved"]
    assert request["headers"]["authorization"] == SECRET  # read from the Secret by the agent
    assert request["headers"]["content-type"] == "application/json"
    sent = json.loads(request["body"])  # Argo's substitution made valid JSON of the text
    assert sent == {"customer": CUSTOMER, "decision": "approve", "n": [1, 2.5]}
    assert json.loads(called["outputs"]["result"]) == {"got": request["body"], "path": "/approved"}

    # The local run, with nobody answering either, decides and sends the same.
    local_seen = len(seen)
    out, dead = MemorySink(), MemorySink()
    host_url = f"http://127.0.0.1:{hooks[0]}"
    never = threading.Event()

    def nobody(request: ApprovalRequest) -> str:
        never.wait(TIMEOUT * 3)
        return "reject"

    run_local(
        language_pipeline(host_url).build(),
        ListSource([{"customer": CUSTOMER}]),
        output=out,
        dead_letter=dead,
        approver=nobody,
        stage_env={"notify-approved": {"Authorization": SECRET}},
    )
    never.set()
    assert not dead.records, dead.records
    assert out.records[0]["outputs"]["review"] == {"decision": "approve"}
    (local,) = [r for r in seen[local_seen:] if r["path"] == "/approved"]
    assert local["body"] == request["body"]  # the very bytes Argo sent


def test_a_rejection_before_the_timeout_takes_the_otherwise_branch(
    execution: ExecutionPlane, hooks: tuple[int, list[dict[str, Any]]], tmp_path: Path
) -> None:
    _, seen = hooks
    seen.clear()
    name = fx.create_workflow(execution.plane, NAMESPACE, "lang-tier", {"customer": CUSTOMER})
    fx.wait_for(
        execution, name, lambda wf: any(n["phase"] == "Running" for n in fx.by_name(wf, "review"))
    )
    resume(execution.plane, NAMESPACE, name, "review", {"decision": "reject"})
    wf = _wait(execution, name)
    assert wf["status"]["phase"] == "Succeeded", json.dumps(wf["status"], indent=1)[:3000]
    assert _node(wf, "notify-approved")["phase"] == "Skipped"
    assert _node(wf, "notify-rejected")["phase"] == "Succeeded"
    (request,) = [r for r in seen if r["path"] == "/rejected"]
    assert request["method"] == "PUT" and request["body"] == CUSTOMER
    assert request["headers"]["content-type"] == "text/plain; charset=utf-8"

    out, dead = MemorySink(), MemorySink()
    run_local(
        language_pipeline(f"http://127.0.0.1:{hooks[0]}").build(),
        ListSource([{"customer": CUSTOMER}]),
        output=out,
        dead_letter=dead,
        approver=auto_reject,
        log_dir=tmp_path,
    )
    assert not dead.records, dead.records
    record = out.records[0]
    assert set(record["outputs"]) == {"review", "notify-rejected"}
    assert record["skipped"] == ["notify-approved"]
