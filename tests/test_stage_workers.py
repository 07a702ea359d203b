"""Long-lived stage workers: one import, many invocations, outcomes classified like exit codes."""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from rtflow.stages import contract, runtime
from rtflow.stages.workers import Worker, WorkerPool, WorkerStartError, measure_overhead

SCORE = "local_pipelines.shop:score"
PARSE = "local_pipelines.shop:parse"


def test_one_worker_serves_many_invocations_with_argo_text() -> None:
    worker = Worker(SCORE).start()
    try:
        pid = worker.proc.pid if worker.proc else None
        for amount in (100, 2500):
            result = worker.call({"amount": str(amount), "kind": "normal"})
            assert result.status == "ok", result.error
        assert result.outputs == {"result": "1.0"}
        assert worker.proc is not None and worker.proc.pid == pid  # no process per event
        assert result.run_ms <= result.ms
    finally:
        worker.close()


def test_named_tuple_outputs_are_argo_text() -> None:
    with WorkerPool(PARSE) as pool:
        result = pool.call({"order": '{"amount": 5, "items": ["a"]}'})
    assert result.outputs == {"amount": "5.0", "kind": "normal", "items": '["a"]'}


def test_bad_input_and_failure_are_told_apart() -> None:
    with WorkerPool(SCORE) as pool:
        bad = pool.call({"amount": "not json", "kind": "normal"})
        missing = pool.call({"kind": "normal"})
        failed = pool.call({"amount": "1", "kind": "explode"})
        ok = pool.call({"amount": "1", "kind": "normal"})
    assert (bad.status, missing.status, failed.status, ok.status) == (
        "bad_input",
        "bad_input",
        "failed",
        "ok",
    )
    assert "amount" in (bad.error or "") and "missing" in (missing.error or "")
    assert failed.error == "RuntimeError: scoring exploded"
    # the same classification as the container entrypoint's exit codes
    assert runtime.EXIT_CODES["bad_input"] == contract.EXIT_BAD_INPUT
    assert runtime.EXIT_CODES["failed"] == contract.EXIT_FAILED


def test_a_bad_input_raised_by_the_function_is_not_retryable() -> None:
    with WorkerPool(PARSE) as pool:
        result = pool.call({"order": '{"kind": "x"}'})
    assert result.status == "bad_input" and result.error == "the order has no amount"


def test_a_timeout_kills_the_worker_and_a_replacement_serves_the_next_call() -> None:
    with WorkerPool(SCORE) as pool:
        slow = pool.call({"amount": "1", "kind": "slow"}, timeout=0.3)
        after = pool.call({"amount": "1", "kind": "normal"})
        assert pool.replaced == 1
    assert slow.status == "timeout"
    assert after.status == "ok"


def test_a_stage_that_cannot_be_imported_fails_at_start() -> None:
    with pytest.raises(WorkerStartError, match="No module named"):
        Worker("no_such_module_xyz:f").start()


def test_prints_in_the_function_do_not_break_the_protocol(tmp_path: Path) -> None:
    # audit writes a file and returns; run it with a state dir and make sure stdout noise from
    # the interpreter itself (warnings, prints) cannot reach the protocol pipe
    os.environ["RTFLOW_TEST_STATE"] = str(tmp_path)
    with WorkerPool("local_pipelines.shop:audit", log_path=tmp_path / "log") as pool:
        result = pool.call({"status": "Succeeded", "name": "n", "uid": "u", "took": "1.5"})
    assert result.outputs == {"result": "Succeeded"}
    assert (tmp_path / "audit-u").read_text() == "Succeeded n 1.5"


def test_runtime_overhead_per_invocation_is_small() -> None:
    overheads = sorted(measure_overhead(SCORE, {"amount": "5", "kind": "normal"}, calls=300))
    p99 = overheads[int(0.99 * (len(overheads) - 1))]
    assert p99 < 20, f"p99 overhead {p99:.3f} ms"  # generous: CI machines are noisy


# -- built-in stages ------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(self.answers.pop(0) if self.answers else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, type[_Handler]]]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.answers, _Handler.bodies = [], []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Handler
    finally:
        server.shutdown()
        server.server_close()


def test_http_callback_retries_5xx_and_refuses_4xx(http_server: tuple[str, Any]) -> None:
    url, handler = http_server
    handler.answers = [503, 502, 201]
    with WorkerPool("rtflow.stages.builtin.http_callback:http_callback") as pool:
        ok = pool.call({"url": url, "payload": '{"a":1}', "backoff_seconds": "0.01"})
        handler.answers = [404]
        bad = pool.call({"url": url, "payload": "{}"})
        handler.answers = [500, 500]
        failed = pool.call({"url": url, "payload": "{}", "retries": "1", "backoff_seconds": "0.01"})
        down = pool.call({"url": "http://127.0.0.1:9/x", "payload": "{}", "retries": "0"})
    assert ok.status == "ok" and ok.outputs == {"result": "201"}
    assert json.loads(handler.bodies[0]) == {"a": 1} and len(handler.bodies) == 6
    assert bad.status == "bad_input" and "404" in (bad.error or "")
    assert failed.status == "failed" and "500" in (failed.error or "")
    assert down.status == "failed"


def test_traceparent_keeps_the_trace_and_makes_a_new_span() -> None:
    from rtflow.stages.builtin.kafka_publish import child_traceparent

    parent = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    child = child_traceparent(parent)
    assert re.fullmatch(r"00-a{32}-[0-9a-f]{16}-01", child) and child != parent
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", child_traceparent("garbage"))


def test_dockerfiles_are_non_root_and_read_only_root_friendly() -> None:
    from rtflow.stages.dockerfiles import UID, render_base_dockerfile, render_stage_dockerfile

    base = render_base_dockerfile(builtin="kafka-publish")
    assert f"USER {UID}:{UID}" in base and "PYTHONDONTWRITEBYTECODE=1" in base
    assert "'confluent-kafka>=2.16,<3'" in base  # quoted: '>' is a shell redirect
    assert 'ENTRYPOINT ["python", "-m", "rtflow.stages"]' in base
    stage = render_stage_dockerfile("fraud_detection.py", requirements="requirements.txt")
    assert stage.rstrip().endswith(f"USER {UID}:{UID}")
    assert "COPY --chown=0:0 fraud_detection.py /app/fraud_detection.py" in stage
    assert "compileall" in stage
    with pytest.raises(ValueError, match="inside the build context"):
        render_stage_dockerfile("../secrets.py")
