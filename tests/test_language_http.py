"""``rtflow.http``: an Argo ``http`` step to any URL (Argo's agent calls, no pod), with headers
from Secrets (``valueFrom.secretKeyRef``), its body a typed value for later stages; compiled
strictly, linted by the real ``argo lint``, and called for real by the local run against a real
HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import strict_schema
from compiled import compile_docs, tasks, templates, workflow_template
from components import component_missing
from local_pipelines import language

import rtflow
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.verify.argo_linters import LinterUnavailable, find_argo_lint, run_argo_lint

SECRET = "Bearer s3cret-for-the-test"


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]]

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = {
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": raw.decode(),
        }
        type(self).seen.append(request)
        if self.path.startswith("/echo"):
            if self.headers.get("Authorization") != SECRET:
                self._answer(401, b'{"error": "unauthorized"}')
                return
            answer = {**request, "json": json.loads(raw)}
            self._answer(200, json.dumps(answer).encode())
        elif self.path == "/text":
            self._answer(201, b"stored", "text/plain")
        elif self.path == "/missing":
            self._answer(404, b"not here", "text/plain")
        elif self.path == "/slow":
            time.sleep(3)
            self._answer(200, b"late", "text/plain")
        else:
            self._answer(500, b"broken", "text/plain")

    do_GET = do_POST = do_PUT = _handle


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []
    handler = type("Handler", (_Handler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def calls(base: str) -> rtflow.Pipeline:
    @rtflow.pipeline(name="calls")
    def pipeline(name: str, note: str) -> None:
        user = language.make_user(name)
        echoed = rtflow.http(
            f"{base}/echo?x=1",
            method="POST",
            json={"user": user, "note": note, "n": [1, 2.5]},
            headers={"X-Request-Id": "rtflow-test"},
            secret_headers={"Authorization": rtflow.SecretKey("echo-api", "bearer")},
            returns=dict[str, Any],
            name="echo",
        )
        language.read_echo(echoed)
        rtflow.http(f"{base}/text", method="PUT", body=note, name="put-text", timeout="5s")
        rtflow.http(f"{base}/missing", name="missing", success_status={200, 404})

    return pipeline


BASE = "https://api.example.com"


def test_the_step_is_an_argo_http_template_with_secret_headers() -> None:
    (doc,) = [d for d in compile_docs(calls(BASE)) if d["kind"] == "WorkflowTemplate"]
    made = templates(doc)
    assert made["echo"]["http"] == {
        "url": f"{BASE}/echo?x=1",
        "method": "POST",
        "headers": [
            {"name": "Content-Type", "value": "application/json"},
            {
                "name": "Authorization",
                "valueFrom": {"secretKeyRef": {"name": "echo-api", "key": "bearer"}},
            },
            {"name": "X-Request-Id", "value": "rtflow-test"},
        ],
        "body": "{{inputs.parameters.body}}",
        "timeoutSeconds": 30,
    }
    assert "container" not in made["echo"]  # no pod: Argo's agent makes the call
    assert made["put-text"]["http"]["headers"] == [
        {"name": "Content-Type", "value": "text/plain; charset=utf-8"}
    ]
    assert made["put-text"]["http"]["timeoutSeconds"] == 5
    assert made["missing"]["http"]["successCondition"] == (
        "(response.statusCode == 200) || (response.statusCode == 404)"
    )
    assert "body" not in made["missing"]["http"] and "inputs" not in made["missing"]
    dag = tasks(doc)
    body = {p["name"]: p["value"] for p in dag["echo"]["arguments"]["parameters"]}["body"]
    assert body.startswith('{"n":[1,2.5],"note":{{=toJson(')
    assert dag["echo"]["depends"] == "make-user"
    (read,) = dag["read-echo"]["arguments"]["parameters"]
    assert read["value"] == "{{tasks.echo.outputs.result}}"


def test_a_range_of_statuses_is_one_comparison() -> None:
    @rtflow.pipeline(name="ranged")
    def ranged(x: float) -> None:
        rtflow.http(f"{BASE}/a", success_status=range(200, 300)).after(language.score(x))
        rtflow.http(f"{BASE}/b", name="b", success_status=[201, 202, 409])

    made = templates(workflow_template(ranged))
    code = "response.statusCode"
    assert made["call-api"]["http"]["successCondition"] == f"{code} >= 200 && {code} <= 299"
    assert made["b"]["http"]["successCondition"] == (
        f"({code} >= 201 && {code} <= 202) || ({code} == 409)"
    )


def test_the_agent_may_read_exactly_the_secrets_it_sends() -> None:
    docs = compile_docs(calls(BASE))
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "calls-workflow"]
    assert {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["echo-api"],
            "verbs": ["get"]} in role["rules"]  # fmt: skip
    assert any("workflowtasksets" in r["resources"] for r in role["rules"])
    assert any(
        d["kind"] == "Secret" and d["metadata"]["name"] == "calls-workflow.service-account-token"
        for d in docs
    )


def test_compiled_output_is_strict_deterministic_and_passes_argo_lint(tmp_path: Path) -> None:
    docs = compile_docs(calls(BASE))
    assert docs == compile_docs(calls(BASE))
    for doc in docs:
        assert strict_schema.errors_any(doc) == [], doc["metadata"]["name"]
    try:
        find_argo_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))
    write_folder(compile_pipelines([calls(BASE).build()]), tmp_path)
    result = run_argo_lint(sorted(tmp_path.rglob("workflowtemplate-*.yaml")))
    assert result.ok, "\n".join(result.findings)


def test_no_network_policy_opens_anything_for_a_call_outside_the_cluster() -> None:
    """Argo's agent (not a pipeline pod) makes the call, to an address outside the cluster: the
    pipeline's policies are those of the same pipeline without the step."""

    def policies(with_call: bool) -> list[dict[str, Any]]:
        @rtflow.pipeline(name="notify")
        def notify(x: float) -> None:
            risk = language.score(x)
            if with_call:
                rtflow.http(f"{BASE}/hook", method="POST", json={"risk": risk})

        return [d for d in compile_docs(notify) if d["kind"] == "NetworkPolicy"]

    assert policies(True) == policies(False)
    assert "api.example.com" not in json.dumps(policies(True))


# -- the local run makes the call -------------------------------------------------------------


def _run(pipeline: rtflow.Pipeline, bodies: list[Any], tmp_path: Path, **options: Any) -> Any:
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipeline.build(), ListSource(bodies), output=out, dead_letter=dead, log_dir=tmp_path,
        **options,
    )  # fmt: skip
    return summary, out.records, dead.records


def test_the_local_run_calls_the_server_for_real(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base, seen = server
    note = 'she said "hi" <&> ünï\nline'
    summary, out, dead = _run(
        calls(base),
        [{"name": "ada lovelace", "note": note}],
        tmp_path,
        stage_env={"echo": {"Authorization": SECRET}},
    )
    assert summary.succeeded == 1, dead
    (record,) = out
    assert record["outputs"]["read-echo"] == {"result": "POST /echo?x=1 Ada Lovelace"}
    echoed = record["outputs"]["echo"]["body"]
    assert echoed["json"] == {"user": "Ada Lovelace", "note": note, "n": [1, 2.5]}
    assert record["outputs"]["put-text"] == {"body": "stored"}
    assert record["outputs"]["missing"] == {"body": "not here"}
    by_path = {r["path"]: r for r in seen}
    echo = by_path["/echo?x=1"]
    assert echo["headers"]["content-type"] == "application/json"
    assert echo["headers"]["x-request-id"] == "rtflow-test"
    assert echo["headers"]["authorization"] == SECRET
    put = by_path["/text"]
    assert put["method"] == "PUT" and put["body"] == note
    assert put["headers"]["content-type"] == "text/plain; charset=utf-8"
    assert by_path["/missing"]["method"] == "GET" and by_path["/missing"]["body"] == ""


def test_a_secret_header_not_given_locally_fails_saying_how(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base, seen = server
    summary, _, dead = _run(calls(base), [{"name": "x", "note": "y"}], tmp_path)
    assert summary.failed == 1
    assert "--stage-env echo:Authorization=VALUE" in dead[0]["reason"]
    assert not any(r["path"].startswith("/echo") for r in seen)


def test_a_status_outside_success_fails_and_retries(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base, seen = server

    @rtflow.pipeline(name="failing")
    def failing(x: float) -> None:
        rtflow.http(f"{base}/broken", name="broken", retry=rtflow.Retry(limit=1))
        language.always(x)

    summary, _, dead = _run(failing, [{"x": 1.0}], tmp_path)
    assert summary.failed == 1
    assert "answered 500 (not a 2xx): broken" in dead[0]["reason"]
    assert "after 2 attempt(s)" in dead[0]["reason"]
    assert [r["path"] for r in seen] == ["/broken", "/broken"]


def test_the_step_timeout_bounds_the_call(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base, _ = server

    @rtflow.pipeline(name="slow", default_timeout=1)
    def slow(x: float) -> None:
        rtflow.http(f"{base}/slow", name="slow-call")

    started = time.monotonic()
    summary, _, dead = _run(slow, [{"x": 1.0}], tmp_path)
    assert summary.failed == 1 and time.monotonic() - started < 2.9
    assert "no answer within 1 s" in dead[0]["reason"]


# -- wrong definitions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "problem"),
    [
        ({"url": "ftp://files.example.com/x"}, "url", "is not an http(s) URL"),
        ({"url": "https://bob:hunter2@api.example.com/x"}, "url", "has a password in it"),
        ({"headers": {"Authorization": "Bearer abc"}}, "headers.Authorization", "plain text"),
        ({"headers": {"bad header": "x"}}, "headers.bad header", "not an HTTP header name"),
        ({"secret_headers": {"X-Key": "abc"}}, "secret_headers.X-Key", "must be rtflow.SecretKey"),
        ({"method": "FETCH"}, "method", "is not an HTTP method"),
        ({"success_status": [200, 700]}, "success_status", "not a collection of HTTP status"),
        ({"body": {"a": 1}}, "body", "body= takes text, got a"),
        ({"body": "x", "json": {}}, "json", "both body= and json="),
        ({"returns": set}, "returns", "is not a type rtflow carries"),
        ({"timeout": "soon"}, "timeout", "not a positive duration"),
    ],
)
def test_a_wrong_call_fails_in_one_line(options: dict[str, Any], field: str, problem: str) -> None:
    url = options.pop("url", f"{BASE}/x")

    @rtflow.pipeline(name="wrong")
    def wrong(x: float) -> None:
        rtflow.http(url, name="hook", **options).after(language.score(x))

    with pytest.raises(rtflow.DefinitionError) as caught:
        wrong.build()
    error = caught.value
    assert (error.pipeline, error.stage, error.field) == ("wrong", "hook", field)
    assert problem in error.problem and "\n" not in str(error)


def test_two_unnamed_calls_to_one_host_must_be_named_apart() -> None:
    @rtflow.pipeline(name="twice")
    def twice(x: float) -> None:
        rtflow.http(f"{BASE}/a").after(language.score(x))
        rtflow.http(f"{BASE}/b")

    with pytest.raises(rtflow.DefinitionError, match="two different stages are named 'call-api'"):
        twice.build()


def test_a_step_waiting_for_the_call_is_costed_as_an_http_step() -> None:
    from rtflow.latency import HTTP_PASSES, REQUEUE_MS, estimates

    @rtflow.pipeline(name="costed")
    def costed(x: float) -> None:
        fetched = rtflow.http(f"{BASE}/risk", name="fetch", returns=float)
        language.high(fetched)

    (path,) = estimates(costed.build())
    (term,) = [t for t in path.terms if t.what.startswith("fetch:")]
    assert term.what == f"fetch: http step, {HTTP_PASSES} controller passes"
    assert term.ms == HTTP_PASSES * REQUEUE_MS


def test_a_secret_header_may_come_from_this_process_when_named(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = server
    monkeypatch.setenv("Authorization", SECRET)
    summary, _, dead = _run(calls(base), [{"name": "x", "note": "y"}], tmp_path)
    assert summary.failed == 1, "read a variable nobody named"
    assert "--stage-env echo:Authorization=VALUE" in dead[0]["reason"]
    summary, out, dead = _run(
        calls(base), [{"name": "x", "note": "y"}], tmp_path,
        stage_env={"echo": {"Authorization": None}},
    )  # fmt: skip
    assert summary.succeeded == 1, dead
    assert out[0]["outputs"]["echo"]["body"]["headers"]["authorization"] == SECRET


def test_the_exit_handler_may_call_with_the_run_s_status(
    server: tuple[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    base, seen = server

    @rtflow.pipeline(name="reporting")
    def reporting(x: float) -> None:
        language.score(x)
        with rtflow.on_exit():
            rtflow.http(
                f"{base}/text", method="POST", name="report",
                json={"status": rtflow.workflow.status, "workflow": rtflow.workflow.name},
            )  # fmt: skip

    (doc,) = [d for d in compile_docs(reporting) if d["kind"] == "WorkflowTemplate"]
    (body,) = tasks(doc, "exit-handler")["report"]["arguments"]["parameters"]
    assert body["value"] == (
        '{"status":{{=toJson(workflow.status)}},"workflow":{{=toJson(workflow.name)}}}'
    )
    summary, _, dead = _run(reporting, [{"x": 1.0}], tmp_path)
    assert summary.succeeded == 1, dead
    (sent,) = [json.loads(r["body"]) for r in seen if r["path"] == "/text"]
    assert sent["status"] == "Succeeded" and sent["workflow"].startswith("reporting-")


def test_the_graph_shows_where_the_call_goes() -> None:
    from rtflow.generators.mermaid import flowchart

    text = flowchart(calls(BASE).build())
    assert 'echo["echo: POST api.example.com"]' in text
    assert 'missing["missing: GET api.example.com"]' in text
