"""Stage logs through the standard logging machinery (issue #14): JSON lines with the level, the
event id and trace id on every line (the stage function's own lines too), and the traceback of a
failure; the local run says when it retries a task instead of retrying silently."""

from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path

import pytest
from local_pipelines import lookup
from memory_sink import MemorySink

from rtflow.stages import stage_logging
from rtflow.stages.events import Event
from rtflow.stages.local import run_local


def test_a_failing_stage_logs_level_ids_and_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = MemorySink()
    with caplog.at_level(logging.WARNING, logger="rtflow.local"):
        summary = run_local(
            lookup.lookup_pipeline.build(),
            [Event("orders:1", {"order": {"id": "o1"}})],
            output=MemorySink(),
            dead_letter=dead,
            log_dir=tmp_path,
            sleep=lambda s: None,
        )
    assert summary.failed == 1 and "KeyError: 'missing'" in dead.records[0]["reason"]
    lines = [json.loads(x) for x in (tmp_path / "lookup.log").read_text().splitlines()]
    mine = [x for x in lines if x["logger"] == "checkout"]
    failed = [x for x in lines if x["event"] == "failed"]
    assert len(mine) == 2 and len(failed) == 2  # the first attempt and its retry
    for line in mine + failed:
        assert line["event_id"] == "orders:1" and line["task"] == "lookup"
        assert re.fullmatch("[0-9a-f]{32}", line["trace_id"])
    assert {x["trace_id"] for x in lines if "trace_id" in x} == {mine[0]["trace_id"]}
    assert mine[0]["level"] == "info" and mine[0]["event"] == "looking up o1"
    assert failed[0]["level"] == "error" and failed[0]["error"] == "KeyError: 'missing'"
    assert failed[0]["traceback"].startswith("Traceback (most recent call last):")
    assert 'return str(order["missing"])' in failed[0]["traceback"]
    # the run said it was retrying, naming the event, task and error
    (retry,) = [r for r in caplog.records if r.name == "rtflow.local"]
    assert retry.levelno == logging.WARNING
    assert "event orders:1: task lookup attempt 1 failed" in retry.getMessage()
    assert "KeyError: 'missing'" in retry.getMessage()


def test_the_json_formatter_carries_context_fields_and_exceptions() -> None:
    stream = io.StringIO()
    handler = stage_logging.configure(stream, level="DEBUG")
    try:
        log = logging.getLogger("user.code")
        with stage_logging.context(event_id="e7", trace_id="ab" * 16, workflow=None):
            log.debug("inside", extra={"rows": 3})
            try:
                {}["x"]
            except KeyError:
                log.exception("boom")
        log.warning("outside")
    finally:
        logging.getLogger().removeHandler(handler)
    inside, boom, outside = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert inside["event"] == "inside" and inside["level"] == "debug" and inside["rows"] == 3
    assert inside["event_id"] == "e7" and inside["trace_id"] == "ab" * 16
    assert "workflow" in inside and inside["workflow"] is None  # None context values left out
    assert boom["level"] == "error" and "KeyError: 'x'" in boom["traceback"]
    assert "event_id" not in outside and outside["level"] == "warning"


def test_trace_id_of_a_traceparent() -> None:
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert stage_logging.trace_id_of(parent) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert stage_logging.trace_id_of("00-" + "0" * 32 + "-00f067aa0ba902b7-01") is None
    assert stage_logging.trace_id_of("garbage") is None


def test_the_cli_says_when_it_retries(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from compiled import ROOT

    events = tmp_path / "events.jsonl"
    events.write_text('{"order": {"id": "o1"}}\n')
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         str(ROOT / "tests/local_pipelines/lookup.py"), "--events", str(events), "--no-progress",
         "--log-dir", str(tmp_path / "logs")],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1
    assert (
        "rtflow: event events.jsonl:1: task lookup attempt 1 failed "
        "(failed: KeyError: 'missing')" in result.stderr
    ), result.stderr
    assert f"worker logs: {tmp_path / 'logs'}" in result.stderr
