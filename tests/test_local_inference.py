"""Inference stages in ``rtflow run --local``: the compiled http step, sent for real.

A small KServe v2 server in this process stands in for Triton (the real one is in
tests/integration/test_local_triton.py): it records every request and the connection it came on,
scores with the fraud scorer's math, and can be told to fail, stall or close.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from compiled import templates, workflow_template
from local_pipelines import scoring

import rtflow
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.inference import local_infer_url, substitute
from rtflow.stages.local import RunSummary, main, run_local
from rtflow.stages.local_executor import LocalRunError

WEIGHTS = (0.9, 1.4, 0.8, 1.1, 1.3)
BIAS = -7.0


def risk(features: list[float]) -> float:
    z = BIAS + sum(w * x for w, x in zip(WEIGHTS, features, strict=True))
    return 1.0 / (1.0 + math.exp(-z))


class FakeTriton(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, bytes, int]] = []  # path, body, client port
        self.fail_first: dict[str, int] = {}  # body text -> how many attempts to fail (503)
        self.stall_first: dict[str, int] = {}  # body text -> how many attempts to stall 1.5 s
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Triton
    server: FakeTriton

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        text = body.decode()
        with self.server.lock:
            self.server.requests.append((self.path, body, self.client_address[1]))
            stall = self.server.stall_first.get(text, 0)
            fail = self.server.fail_first.get(text, 0)
            if stall:
                self.server.stall_first[text] = stall - 1
            elif fail:
                self.server.fail_first[text] = fail - 1
        if stall:
            time.sleep(1.5)
        if fail:
            self.reply(503, {"error": "model unavailable"})
            return
        request = json.loads(body)
        (tensor,) = request["inputs"]
        data = [risk(tensor["data"])]
        outputs = [{"name": "risk", "datatype": "FP32", "shape": [1, 1], "data": data}]
        self.reply(200, {"model_name": "fraud-scorer", "model_version": "1", "outputs": outputs})

    def reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def triton() -> Iterator[FakeTriton]:
    server = FakeTriton()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RTFLOW_TEST_STATE", str(tmp_path))
    return tmp_path


def rows(n: int) -> list[list[float]]:
    return [
        [math.log1p(10.0 * (i + 1)), float(i % 2), 0.0, float(i % 3 == 0), 0.0] for i in range(n)
    ]


def run(
    pipeline: rtflow.Pipeline, bodies: list[Any], **options: Any
) -> tuple[RunSummary, list[dict[str, Any]], list[dict[str, Any]]]:
    out, dead = MemorySink(), MemorySink()
    options.setdefault("log_dir", Path(os.environ["RTFLOW_TEST_STATE"]) / "logs")
    summary = run_local(
        pipeline.build(), ListSource(bodies), output=out, dead_letter=dead, **options
    )
    return summary, out.records, dead.records


def compiled_body(features: list[float]) -> str:
    """The http template's body from the compiled YAML, with Argo's substitution done here."""
    step = templates(workflow_template(scoring.scoring))["score"]
    assert step["http"]["method"] == "POST"
    return str(step["http"]["body"]).replace(
        "{{inputs.parameters.features}}", json.dumps(features, separators=(",", ":"))
    )


def test_the_compiled_body_goes_to_the_given_triton_over_kept_alive_connections(
    triton: FakeTriton,
) -> None:
    features = rows(40)
    summary, out, dead = run(
        scoring.scoring, [{"features": f} for f in features], triton=triton.url, max_in_flight=4
    )
    assert summary.failed == 0 and not dead and len(out) == 40
    assert summary.triton == f"Triton at {triton.url}"
    sent = {body.decode() for _, body, _ in triton.requests}
    assert sent == {compiled_body(f) for f in features}  # byte for byte what Argo would POST
    assert {path for path, _, _ in triton.requests} == {"/v2/models/fraud-scorer/infer"}
    # kept alive: at most one connection per event in flight, not one per request
    assert len({port for _, _, port in triton.requests}) <= 4
    by_event = {r["event"]: r for r in out}
    for index, f in enumerate(features):
        record = by_event[f"event:{index}"]
        assert record["outputs"]["risk-of"]["result"] == pytest.approx(risk(f), rel=1e-9)
        assert record["outputs"]["score"]["response"]["outputs"][0]["name"] == "risk"
    assert {s.stage for s in summary.stages} == {"score", "risk-of"}


def test_a_failing_triton_is_retried_with_backoff_then_the_event_is_dead_lettered(
    triton: FakeTriton,
) -> None:
    features = rows(6)
    flaky, broken = compiled_body(features[1]), compiled_body(features[4])
    triton.fail_first = {flaky: 2, broken: 99}
    waits: list[float] = []
    summary, out, dead = run(
        scoring.scoring,
        [{"features": f} for f in features],
        triton=triton.url,
        sleep=waits.append,
        max_in_flight=1,
    )
    assert summary.events == 6 and summary.succeeded == 5 and summary.failed == 1
    assert {r["event"] for r in out} == {f"event:{i}" for i in (0, 1, 2, 3, 5)}
    (letter,) = dead
    assert letter["event"] == "event:4" and letter["payload"] == {"features": features[4]}
    assert "task score failed after 4 attempt(s)" in letter["reason"]
    assert "answered 503" in letter["reason"] and "model unavailable" in letter["reason"]
    # the stage's retry: limit 3, 500ms * 2**n (2 waits for the flaky event, 3 for the broken)
    assert waits == [0.5, 1.0, 0.5, 1.0, 2.0]


def test_a_slow_triton_times_out_at_the_step_timeout_and_is_retried(triton: FakeTriton) -> None:
    features = rows(3)
    triton.stall_first = {compiled_body(features[0]): 1}
    started = time.monotonic()
    summary, out, dead = run(
        scoring.scoring,
        [{"features": f} for f in features],
        triton=triton.url,
        sleep=lambda s: None,
    )
    assert summary.failed == 0 and len(out) == 3 and not dead
    assert time.monotonic() - started < 10
    (slow,) = [t for t in summary.stages if t.stage == "score"]
    assert slow.count == 4 and 950 <= slow.max_ms < 1500  # cut at timeout="1s", then again


def test_a_triton_that_is_down_dead_letters_every_event_and_the_run_goes_on() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    summary, out, dead = run(
        scoring.scoring,
        [{"features": f} for f in rows(3)],
        triton=f"http://127.0.0.1:{port}",
        sleep=lambda s: None,
    )
    assert summary.events == 3 and summary.failed == 3 and not out and len(dead) == 3
    for letter in dead:
        assert "after 4 attempt(s)" in letter["reason"]
        assert "ConnectionRefusedError" in letter["reason"]
        assert f"127.0.0.1:{port}/v2/models/fraud-scorer/infer" in letter["reason"]
    assert summary.exit_code == 1


def test_triton_url_replaces_the_cluster_host_and_keeps_the_path() -> None:
    cluster = "http://scoring-triton.risk.svc:8000/v2/models/fraud-scorer/infer"
    assert local_infer_url(cluster, "http://127.0.0.1:9000") == (
        "http://127.0.0.1:9000/v2/models/fraud-scorer/infer"
    )
    assert local_infer_url(cluster, "localhost:9000/") == (
        "http://localhost:9000/v2/models/fraud-scorer/infer"
    )
    assert local_infer_url(cluster, "https://gw.example/triton") == (
        "https://gw.example/triton/v2/models/fraud-scorer/infer"
    )
    assert substitute('{"data":{{inputs.parameters.x}}}', {"x": "[1,2]"}) == '{"data":[1,2]}'


def test_a_model_whose_files_are_not_local_cannot_start_a_local_triton(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"edges": [0, 1]}) + "\n")
    code = main(
        [
            "tests/local_pipelines/remote_model.py",
            "--events",
            str(events),
            "--no-progress",
            "--log-dir",
            str(tmp_path / "logs"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "model 'edge-risk': version 3 has no local files" in err[0]
    assert "s3://acme-models/triton" in err[0] and "--triton-url" in err[0]


def test_an_unknown_server_is_refused_before_any_event() -> None:
    pipeline = scoring.scoring.build()
    pipeline = type(pipeline)(**{**pipeline.__dict__, "servers": ()})
    with pytest.raises(LocalRunError, match="does not declare"):
        run_local(pipeline, ListSource([]), output=MemorySink(), dead_letter=MemorySink())
