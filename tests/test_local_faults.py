"""A local run survives every bad event: each is dead-lettered with the real reason, once, and the
run goes on; the bookkeeping behind commits, the stage runtime's SIGTERM rule, and the reaper
that stops a killed run's children. (The same cases against a real broker and Triton are in
tests/integration/test_local_faults_*.py.)"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from local_pipelines import filtered, shop

from rtflow.stages import semantics
from rtflow.stages.dead_letters import RecordTooLarge, encode_record, headers, letter
from rtflow.stages.events import Event, ListSource, MemorySink
from rtflow.stages.inference import _refusal
from rtflow.stages.local import auto_approve, run_local
from rtflow.stages.offsets import OffsetBook
from rtflow.stages.portable_json import parse as parse_body
from rtflow.stages.reaper import Reaper, start_time
from rtflow.stages.shutdown import Shutdown
from rtflow.stages.workers import Worker

# -- reasons name the real problem ---------------------------------------------------------------


def test_parse_names_each_problem() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    cases = {
        deep: "nested too deeply",
        b'{"amount": 1e999}': "the number 1e999 is out of range",
        b'{"amount": ' + b"9" * 400 + b"}": "(400 digits) is out of range",
        b'{"amount": NaN}': "NaN is not JSON",
        b"{id: 1": "the message is not JSON",
        b"\xff\xfe{": "not UTF-8",
    }
    for raw, expected in cases.items():
        _, problem = parse_body(raw)
        assert problem is not None and expected in problem, (raw[:20], problem)
        assert "is not a dict" not in problem
    assert parse_body(b'{"amount": 1.5e300, "n": 12}') == ({"amount": 1.5e300, "n": 12}, None)


def test_the_filter_says_a_number_is_out_of_range_instead_of_crashing() -> None:
    trigger = filtered.with_data_filters.build().triggers[0]
    body = {"kind": "buy", "amount": 10**400, "vip": True}
    with pytest.raises(ValueError, match=r"body\.amount is a number of 401 digits, out of range"):
        semantics.trigger_passes(trigger, body, {})


def test_every_bad_event_is_dead_lettered_once_and_the_run_goes_on() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep]
    bodies: list[Any] = [
        {"kind": "buy", "amount": 10**400, "vip": True},  # OverflowError in the filter
        {"kind": "buy", "amount": 50, "vip": True, "deep": deep},  # RecursionError encoding it
        {"kind": "buy", "amount": 50, "vip": True},
        {"kind": "sell", "amount": 50, "vip": True},  # filtered
        {"kind": "buy", "amount": 60, "vip": True},
    ]
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        filtered.with_data_filters.build(),
        ListSource(bodies),
        output=out,
        dead_letter=dead,
        stand_ins={"amount-of": lambda order: float(order["amount"])},
    )
    assert summary.events == 5 and summary.succeeded == 2 and summary.filtered == 1
    reasons = {r["event"]: r["reason"] for r in dead.records}
    assert reasons["event:0"].startswith("filter: body.amount is a number of 401 digits")
    assert reasons["event:1"].startswith("payload: RecursionError: nested too deeply")
    assert len(dead.records) == 2 and len(out.records) == 2
    # the deep payload could not be written back as JSON: its text stands in for it
    deep_letter = next(r for r in dead.records if r["event"] == "event:1")
    assert isinstance(deep_letter["payload"], str) and "payload_error" in deep_letter
    assert json.loads(encode_record(deep_letter))["reason"] == deep_letter["reason"]


# -- dead letters fit their topic ----------------------------------------------------------------


def test_an_oversize_dead_letter_is_cut_to_fit_and_keeps_its_source() -> None:
    raw = json.dumps({"blob": "x" * 2_000_000}).encode()
    body, _ = parse_body(raw)
    event = Event("t/1/7", body, raw=raw, source={"topic": "t", "partition": 1, "offset": 7})
    record = letter(event, "task x failed: boom", pipeline="p")
    value = encode_record(record, 1_000_000)
    assert len(value) <= 1_000_000
    decoded = json.loads(value)
    assert decoded["truncated"]["bytes"] > 2_000_000 and decoded["payload"].startswith('{"blob"')
    assert decoded["source"] == {"topic": "t", "partition": 1, "offset": 7}
    assert dict(headers(decoded))["rtflow-source-offset"] == b"7"
    with pytest.raises(RecordTooLarge, match="the result is 2,000,"):
        encode_record({"event": "e", "outputs": {"x": "y" * 2_000_000}}, 1_000_000)


# -- offsets count as committed only once confirmed ----------------------------------------------


def test_a_position_stays_due_until_the_broker_confirms_it() -> None:
    book = OffsetBook()
    for offset in range(5):
        book.read(0, offset)
    for offset in (0, 1, 3):
        book.done(0, offset)
    assert book.due() == {0: 2}  # 2 is still open: 3 waits for it
    # the commit was sent but never confirmed (failed, or the process died): still due
    assert book.due() == {0: 2}
    book.confirmed({0: 2})
    assert book.due() == {}
    book.done(0, 2)
    book.done(0, 4)
    assert book.due() == {0: 5} and book.in_flight() == 0
    assert book.span() == 3  # read beyond the confirmed commit (2): 2, 3, 4
    book.confirmed({0: 5})
    assert book.due() == {} and book.committed(0) == 5 and book.span() == 0


# -- retry only what may succeed -----------------------------------------------------------------


def test_a_bad_input_is_not_retried_whatever_the_stage_kind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtflow.stages.runtime import BadInput

    calls: list[str] = []

    def flaky(key: str, failures: int) -> int:  # a stand-in: a "container" to the retry rule
        calls.append(key)
        raise BadInput("failures must not be negative")

    monkeypatch.setenv("RTFLOW_TEST_STATE", str(tmp_path))
    dead = MemorySink()
    waits: list[float] = []
    run_local(
        shop.retrying.build(),  # flaky retries 3 times with backoff, policy Always
        ListSource([{"key": "x", "failures": -1}]),
        output=MemorySink(),
        dead_letter=dead,
        stand_ins={"flaky": flaky},
        approver=auto_approve,
        sleep=waits.append,
    )
    assert calls == ["x"] and waits == []
    assert "bad_input: failures must not be negative" in dead.records[0]["reason"]


def test_triton_refusing_the_tensors_is_a_bad_input_and_its_state_is_not() -> None:
    assert _refusal(400, '{"error":"unexpected shape for input \'features\'"}') == "bad_input"
    shape = "Unable to parse 'data': Shape does not match true shape of 'data' field"
    assert _refusal(500, json.dumps({"error": shape})) == "bad_input"  # Triton 2.51's answer
    assert _refusal(500, '{"error":"failed to connect to all addresses"}') == "failed"
    assert _refusal(400, '{"error":"Request for unknown model: \'m\' is not found"}') == "failed"
    assert _refusal(503, "unavailable") == "failed"
    assert _refusal(429, "too many") == "failed"


# -- SIGTERM and Ctrl-C drain ------------------------------------------------------------------


def test_a_stop_request_drains_what_is_in_flight_and_reads_no_more(tmp_path: Path) -> None:
    shutdown = Shutdown()
    seen: list[int] = []

    def slow(order: dict[str, Any]) -> float:
        seen.append(int(order["amount"]))
        if len(seen) == 3:
            shutdown.request(signal.SIGINT)
        time.sleep(0.2)
        return float(order["amount"])

    bodies = [{"kind": "buy", "amount": 11 + i, "vip": True} for i in range(200)]
    out = MemorySink()
    summary = run_local(
        filtered.with_data_filters.build(),
        ListSource(bodies),
        output=out,
        dead_letter=MemorySink(),
        stand_ins={"amount-of": slow},
        max_in_flight=4,
        shutdown=shutdown,
    )
    assert summary.exit_code == 130 and summary.interrupted
    assert 3 <= len(out.records) <= 8  # what was in flight, not the 200
    assert len(out.records) == len(seen) == summary.succeeded  # each started one finished
    shutdown.signal = signal.SIGTERM
    assert shutdown.exit_code == 0


# -- the stage runtime on SIGTERM ----------------------------------------------------------------

STAGES = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path

    if os.environ.get("SLOW_IMPORT"):
        Path(os.environ["SLOW_IMPORT"]).write_text("importing")
        time.sleep(30)

    def pay(amount: float) -> str:
        Path(os.environ["MARK"]).write_text("started")
        time.sleep(1.5)
        with open(os.environ["LEDGER"], "a") as ledger:
            ledger.write(f"paid {amount}\\n")
        return "paid"
    """
)


def _stage_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "sigstage.py").write_text(STAGES)
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "MARK": str(tmp_path / "mark"),
        "LEDGER": str(tmp_path / "ledger"),
        **extra,
    }


def _wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def _logs(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]


def test_sigterm_during_the_call_lets_it_finish_and_is_not_a_retry(tmp_path: Path) -> None:
    env = _stage_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtflow.stages", "run", "sigstage:pay",
         "--outputs-dir", str(tmp_path / "out"), "--input", "amount=12.5"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(tmp_path / "mark")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # the call finished: its outcome decides, no retry
    assert (tmp_path / "ledger").read_text() == "paid 12.5\n"
    assert (tmp_path / "out" / "result").read_text() == "paid"
    events = [(e["event"], e.get("called")) for e in _logs(err)]
    assert events == [("terminating", True), ("succeeded", None), ("terminated", True)]


def test_sigterm_before_the_call_exits_143_and_says_a_retry_is_safe(tmp_path: Path) -> None:
    env = _stage_env(tmp_path, SLOW_IMPORT=str(tmp_path / "importing"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtflow.stages", "run", "sigstage:pay",
         "--outputs-dir", str(tmp_path / "out"), "--input", "amount=1"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_for(tmp_path / "importing")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    (log,) = _logs(err)
    assert log["event"] == "terminated" and log["called"] is False and log["retry_safe"] is True
    assert not (tmp_path / "ledger").exists()


def test_a_worker_terminated_mid_call_answers_it_then_exits(tmp_path: Path) -> None:
    log = (tmp_path / "worker.log").open("w")
    worker = Worker("sigstage:pay", env=_stage_env(tmp_path), stderr=log).start()
    try:
        assert worker.proc is not None
        proc = worker.proc
        result: list[Any] = []
        import threading

        caller = threading.Thread(target=lambda: result.append(worker.call({"amount": "3"})))
        caller.start()
        _wait_for(tmp_path / "mark")
        proc.send_signal(signal.SIGTERM)
        caller.join(30)
        assert result[0].status == "ok" and result[0].outputs == {"result": "paid"}
        assert proc.wait(10) == 143
    finally:
        worker.close()
        log.close()
    lines = _logs((tmp_path / "worker.log").read_text())
    assert [e["event"] for e in lines] == ["terminating", "terminated"]
    assert (tmp_path / "ledger").read_text() == "paid 3.0\n"


# -- the reaper ----------------------------------------------------------------------------------

PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    from rtflow.stages.reaper import Reaper
    reaper = Reaper(grace=2.0).start()
    child = subprocess.Popen(["sleep", "600"], start_new_session=True)
    reaper.watch(child.pid, group=True)
    print(reaper.pid, child.pid, flush=True)
    time.sleep(600)
    """
)


def test_the_reaper_stops_the_children_of_a_killed_run() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    reaper_pid, child_pid = map(int, parent.stdout.readline().split())
    time.sleep(0.3)  # the watch line reaches the reaper
    assert start_time(child_pid) is not None
    parent.kill()  # SIGKILL: no finally, no atexit, nothing of the parent runs
    parent.wait()
    deadline = time.monotonic() + 10
    while start_time(child_pid) is not None or start_time(reaper_pid) is not None:
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.05)


def test_a_reaper_forgets_what_ended_cleanly() -> None:
    reaper = Reaper(grace=1.0).start()
    other = subprocess.Popen(["sleep", "600"])
    try:
        reaper.watch(other.pid)
        reaper.forget(other.pid)
        reaper.close()
        assert other.poll() is None  # forgotten: not the reaper's to stop
    finally:
        other.kill()
        other.wait()


def test_a_second_sigterm_stops_at_once_without_writing_what_was_cut_short(
    tmp_path: Path,
) -> None:
    root = Path(__file__).resolve().parent
    events = tmp_path / "events.jsonl"
    events.write_text('{"order": {"amount": 5, "kind": "slow"}}\n' * 8)  # 5 s each
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), *sys.path])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         f"{root / 'local_pipelines' / 'shop.py'}:shop", "--events", str(events),
         "--max-in-flight", "2", "--auto-approve", "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        from local_faults_harness import descendants

        deadline = time.monotonic() + 60
        while not any("shop:score" in c for c in descendants(proc.pid).values()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        time.sleep(3.0)  # the workers ready, the first score calls (5 s each) running
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert time.monotonic() - stopped < 4, err  # not the 5 s the running calls need
    assert proc.returncode == 0, err
    assert out == ""  # nothing written for the events cut short: a restart runs them again
    assert "finishing the events in flight" in err and "stopped at once" in err
