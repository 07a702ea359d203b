"""rtflow run --local as a newcomer meets it (issue #14): the fraud example's shipped events and
stand-ins, a stage's own env= honoured, stand-ins refused at once when they cannot fit, the
progress line that keeps a meaningful rate while idle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from compiled import ROOT
from components import component_missing
from local_pipelines import env_echo, shop
from memory_sink import MemorySink

from rtflow.stages.events import Event
from rtflow.stages.local import run_local
from rtflow.stages.local_executor import LocalRunError
from rtflow.stages.progress import RunProgress
from rtflow.stages.run_report import RunSummary

sys.path.insert(0, str(ROOT / "examples"))
from models import fraud_events

ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])}


def events(*bodies: dict[str, Any]) -> list[Event]:
    return [Event(f"e{i}", body) for i, body in enumerate(bodies)]


def test_the_shipped_fraud_events_are_what_the_generator_makes() -> None:
    shipped = (ROOT / "examples" / "local" / "fraud_events.jsonl").read_bytes().splitlines()
    made = [message for _, message in fraud_events.events(200, seed=7, valid_only=True)]
    assert shipped == made
    assert all(isinstance(json.loads(m)["amount"], float) for m in shipped)  # all valid


def test_a_stage_own_env_reaches_its_workers(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("FROM_SHELL", "shell")
    monkeypatch.setenv("TARGET", "shell-target")
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        env_echo.env_echo.build(),
        events({"name": "ada"}),
        output=out,
        dead_letter=dead,
        log_dir=tmp_path,
        stage_env={"greet-configured": {"TARGET": None, "GREETING": "bye"}},
    )
    assert summary.exit_code == 0, dead.records
    (record,) = out.records
    # the stage's env= wins over the shell's; the shell's other variables pass through
    assert record["outputs"]["greet"]["result"] == "ada hello cluster shell"
    # --stage-env: a value replaces the stage's; a bare name takes the shell's value
    assert record["outputs"]["greet-configured"]["result"] == "ada bye shell-target shell"


def test_stage_env_through_the_cli(tmp_path: Path) -> None:
    events_file = tmp_path / "events.jsonl"
    events_file.write_text('{"name": "ada"}\n')
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         str(ROOT / "tests/local_pipelines/env_echo.py"), "--events", str(events_file),
         "--no-progress", "--stage-env", "greet:GREETING=salut", "--stage-env", "greet:TARGET"],
        env={k: v for k, v in ENV.items() if k != "TARGET"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    outputs = json.loads(result.stdout)["outputs"]
    assert outputs["greet"]["result"] == "ada salut - -"  # TARGET removed: the shell has none
    assert outputs["greet-configured"]["result"] == "ada hi cluster -"
    wrong = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         str(ROOT / "tests/local_pipelines/env_echo.py"), "--events", str(events_file),
         "--stage-env", "gret:X=1"],
        env=ENV, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "--stage-env given for 'gret', which is not a stage of 'env-echo'" in wrong.stderr


def test_a_stand_in_with_a_wrong_signature_is_refused_before_any_event(tmp_path: Path) -> None:
    calls: list[str] = []

    def score(value: float) -> float:  # the stage's inputs are amount and kind
        calls.append("called")
        return value

    with pytest.raises(LocalRunError) as error:
        run_local(
            shop.shop.build(),
            events({"order": {"amount": 5}}),
            output=MemorySink(),
            dead_letter=MemorySink(),
            stand_ins={"score": score},
            log_dir=tmp_path,
        )
    message = str(error.value)
    assert "stand-in for stage 'score'" in message and "cannot take its inputs" in message
    assert "(amount, kind)" in message and "\n" not in message
    assert calls == []  # refused up front, not retried on every event


def test_stand_ins_from_a_file_by_stage_name(tmp_path: Path) -> None:
    module = tmp_path / "my_stand_ins.py"
    module.write_text("def score(amount: float, kind: str) -> float:\n    return 0.25\n")
    events_file = tmp_path / "events.jsonl"
    events_file.write_text('{"order": {"amount": 5}}\n')
    base = [sys.executable, "-m", "rtflow.cli", "run", "--local",
            str(ROOT / "tests/local_pipelines/shop.py") + ":shop", "--events", str(events_file),
            "--auto-approve", "--no-progress"]  # fmt: skip
    result = subprocess.run(
        [*base, "--stand-ins", str(module)], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["outputs"]["score"] == {"result": 0.25}
    module.write_text("def scorer(amount: float, kind: str) -> float:\n    return 0.25\n")
    none = subprocess.run(
        [*base, "--stand-ins", str(module)], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert none.returncode == 2
    assert "no function named after a stage" in none.stderr


def test_the_readme_fraud_run_processes_every_event(tmp_path: Path) -> None:
    """The README's quick-start local run of the fraud example, as written there (without its
    install prefix, which tests/test_docs.py runs in a fresh virtualenv): exit 0, 200 decisions."""
    from rtflow.gpu import triton_server as ts

    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))
    readme = (ROOT / "README.md").read_text()
    (line,) = [
        line for line in readme.splitlines()
        if line.startswith("python -m venv") and "rtflow run --local examples/fraud" in line
    ]  # fmt: skip
    command = line[line.index("rtflow run --local") :]
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    bin_dir = str(Path(sys.executable).parent)
    env = {**ENV, "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")])}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert len(records) == 200 and {r["status"] for r in records} == {"Succeeded"}
    assert "200 events in" in result.stderr and "200 succeeded, 0 failed" in result.stderr
    reviewed = [r for r in records if "analyst-approval" in r["outputs"]]
    # the analyst approved (--auto-approve) and the block-card stand-in ran for each of them
    assert reviewed and all("block-card" not in r["skipped"] for r in reviewed)
    assert all("block-card" in r["skipped"] for r in records if r not in reviewed)


def test_the_progress_rate_stays_meaningful_while_idle() -> None:
    summary = RunSummary()
    progress = RunProgress(summary, threading.Lock(), 50, terminal=False)
    progress._started = progress._last_change = 100.0
    summary.events, summary.succeeded = 10, 10
    assert progress.line(now=105.0) == "progress: 10/50 events  10 ok  0 failed  2.0/s average"
    # nothing finished for 3 s: the average stays, and the line says it is idle
    assert progress.line(now=108.0) == (
        "progress: 10/50 events  10 ok  0 failed  1.2/s average  idle 3 s"
    )
    summary.events, summary.succeeded, summary.failed = 12, 11, 1
    assert progress.line(now=110.0) == "progress: 12/50 events  11 ok  1 failed  1.2/s average"


def test_a_missing_extra_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """confluent-kafka comes with rtflow[stream]: a run that reads a topic without it says what
    to install instead of a traceback."""
    from rtflow.cli import main

    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails as if not installed
    code = main(["run", "--local", str(ROOT / "tests/local_pipelines/shop.py") + ":shop",
                 "--kafka-topic", "orders", "--kafka-brokers", "127.0.0.1:9"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        "rtflow: error: this run needs confluent_kafka, which is not installed: "
        "pip install 'rtflow[stream]'\n"
    )
