"""The rtflow command follows the conventions of kubectl, argo and gh (issue #14): --help of every
subcommand, --debug anywhere, exit codes 0/1/2/130, -o is where a result goes and --format json
what a script reads, shell completion, and compile's summary that says what it did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from compiled import PIPELINES, ROOT

from rtflow.cli import build_parser

SHOP = str(ROOT / "tests" / "local_pipelines" / "shop.py") + ":shop"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), *sys.path])}


def rtflow(
    *args: str, cwd: Path = ROOT, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        input=stdin,
        timeout=300,
    )


def subcommands() -> list[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    assert isinstance(action.choices, dict)
    return sorted(action.choices)


def test_the_subcommands_are_the_documented_ones() -> None:
    assert subcommands() == [
        "compile",
        "completion",
        "graph",
        "lint",
        "run",
        "stage-dockerfile",
        "submit",
    ]


@pytest.mark.parametrize(
    "command", [[], *([c] for c in subcommands())], ids=lambda c: c or "rtflow"
)
def test_help_of_every_subcommand_exits_0(command: list[str]) -> None:
    result = rtflow(*command, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: rtflow"), result.stdout[:200]
    assert result.stderr == ""


def test_run_help_documents_the_local_run() -> None:
    result = rtflow("run", "--help")
    assert result.returncode == 0
    assert "--local" in result.stdout and "--stand-ins" in result.stdout


def test_debug_before_or_after_the_subcommand(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"order": {"amount": 5}}\n')
    for args in (
        ["--debug", "run", "--local", SHOP, "--events", str(events), "--auto-approve"],
        ["run", "--local", SHOP, "--events", str(events), "--auto-approve", "--debug"],
    ):
        result = rtflow(*args, "--no-progress")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["status"] == "Succeeded"
    # --debug shows the traceback of a one-line error, without it there is none
    bad = str(PIPELINES / "bad_quantity.py")
    plain, debug = rtflow("compile", bad, "-o", "-"), rtflow("--debug", "compile", bad, "-o", "-")
    assert plain.returncode == debug.returncode == 2
    assert "Traceback" not in plain.stderr and "Traceback" in debug.stderr
    assert plain.stderr.count("\n") == 1 and plain.stderr.startswith("rtflow: error: pipeline ")


# -- exit codes -----------------------------------------------------------------------------------


def test_exit_0_done_and_1_findings(tmp_path: Path) -> None:
    target = str(PIPELINES / "two_pipelines.py")
    assert rtflow("compile", target, "-o", str(tmp_path)).returncode == 0
    (tmp_path / "ingest" / "workflowtemplate-ingest.yaml").write_text("edited: true\n")
    assert rtflow("compile", target, "-o", str(tmp_path), "--check").returncode == 1
    events = tmp_path / "events.jsonl"
    events.write_text('{"order": {"amount": 5}}\n{"order": {"kind": "no amount"}}\n')
    run = rtflow("run", "--local", SHOP, "--events", str(events), "--auto-approve", "--no-progress")
    assert run.returncode == 1  # one event failed
    assert "failed: events.jsonl:2" in run.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["compile"],  # no target
        ["compile", "examples/fraud_detection.py"],  # no -o
        ["frobnicate"],
        ["run", "examples/fraud_detection.py", "--events", "x.jsonl"],  # no --local
        ["run", "--local", "examples/fraud_detection.py"],  # no events
        ["compile", str(PIPELINES / "bad_quantity.py"), "-o", "-"],  # a wrong definition
        ["graph", "no/such/file.py"],
        ["lint", "no/such/folder"],
    ],
    ids=lambda a: " ".join(a)[:40],
)
def test_exit_2_usage_and_wrong_input(args: list[str]) -> None:
    result = rtflow(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_drains_and_exits_130(tmp_path: Path) -> None:
    """Ctrl-C while reading events from stdin: the run drains what is in flight and exits 130
    (128 + SIGINT, as shells report it). The signal is sent once the first result is out, so
    the run is surely past loading, with no sleep."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtflow.cli", "run", "--local", SHOP, "--events", "-",
         "--auto-approve", "--no-progress"],
        cwd=ROOT, env=ENV, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write('{"order": {"amount": 5}}\n')
        proc.stdin.flush()
        first = proc.stdout.readline()
        assert json.loads(first)["status"] == "Succeeded"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "SIGINT: finishing the events in flight" in err
    assert "1 succeeded" in err


# -- output conventions ---------------------------------------------------------------------------


def test_compile_says_what_is_new_and_what_changed(tmp_path: Path) -> None:
    target = str(PIPELINES / "two_pipelines.py")
    first = rtflow("compile", target, "-o", str(tmp_path))
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".rtflow-compiled"]
    assert f"({len(written)} new)" in first.stderr, first.stderr  # the record is not counted
    again = rtflow("compile", target, "-o", str(tmp_path))
    assert "(no file changed)" in again.stderr
    (tmp_path / "ingest" / "workflowtemplate-ingest.yaml").write_text("edited: true\n")
    fixed = rtflow("compile", target, "-o", str(tmp_path))
    assert "(1 updated)" in fixed.stderr


def test_format_json_of_compile_graph_lint_and_run(tmp_path: Path) -> None:
    target = str(PIPELINES / "two_pipelines.py")
    compiled = rtflow("compile", target, "-o", str(tmp_path), "--format", "json")
    assert compiled.returncode == 0, compiled.stderr
    summary = json.loads(compiled.stdout)
    files = sorted(
        p.relative_to(tmp_path).as_posix()
        for p in tmp_path.rglob("*")
        if p.is_file() and p.name != ".rtflow-compiled"
    )
    assert summary["created"] == files and summary["updated"] == [] == summary["removed"]
    assert summary["pipelines"] == ["ingest", "nightly-report"]
    check = json.loads(rtflow("compile", target, "-o", str(tmp_path), "--check", "--format",
                              "json").stdout)  # fmt: skip
    assert check == {"current": True, "folder": str(tmp_path), "stale": 0}

    graph = json.loads(rtflow("graph", "examples/fraud_detection.py", "--format", "json").stdout)
    (pipeline,) = graph["pipelines"]
    assert pipeline["name"] == "fraud-detection" and pipeline["latency_budget_ms"] == 35
    assert pipeline["mermaid"].startswith("flowchart TD\n")
    assert any(p["waits_for"] == "analyst-approval" for p in pipeline["paths"])
    assert all(p["plane"] in {"stream", "workflow"} for p in pipeline["paths"])

    for flag in ("--format", "--output"):  # --output json: the first spelling, kept
        lint = rtflow("lint", str(tmp_path), "--no-real-linters", flag, "json")
        assert lint.returncode in (0, 1), lint.stderr
        assert isinstance(json.loads(lint.stdout), dict)

    events = tmp_path / "events.jsonl"
    events.write_text('{"order": {"amount": 5}}\n{"order": {"kind": "no amount"}}\n')
    out = str(tmp_path / "out.jsonl")
    run = rtflow("run", "--local", SHOP, "--events", str(events), "--auto-approve",
                 "--no-progress", "--format", "json", "-o", out)  # fmt: skip
    report = json.loads(run.stderr.splitlines()[-1])
    assert report["events"] == 2 and report["succeeded"] == 1 and report["failed"] == 1
    assert report["exit_code"] == run.returncode == 1
    assert report["failures"][0]["event"] == "events.jsonl:2"
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1  # -o FILE: the results


def test_shell_completion(tmp_path: Path) -> None:
    script = rtflow("completion", "bash")
    assert script.returncode == 0 and "rtflow" in script.stdout
    assert "complete " in script.stdout  # bash's builtin, registering the function
    out = tmp_path / "completions"
    line = "rtflow com"
    env = {**ENV, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert sorted(out.read_text().split()) == ["compile", "completion"]


def test_stage_dockerfile_names_the_local_imports_it_would_leave_out() -> None:
    """The fraud example imports its models/ package: a Dockerfile of the module alone would
    build an image that fails with ModuleNotFoundError in the cluster."""
    examples = ROOT / "examples"
    alone = rtflow("stage-dockerfile", "fraud_detection.py", cwd=examples)
    assert alone.returncode == 2
    assert alone.stderr == (
        "rtflow: error: fraud_detection.py imports 'models' from the build context, which the "
        "image would not have; add it: rtflow stage-dockerfile fraud_detection.py models\n"
    )
    whole = rtflow("stage-dockerfile", "fraud_detection.py", "models", cwd=examples)
    assert whole.returncode == 0, whole.stderr
    assert "COPY --chown=0:0 models /app/models" in whole.stdout
