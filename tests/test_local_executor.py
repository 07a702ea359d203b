"""The local executor runs a pipeline's IR as Argo would, checked against the compiled YAML."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from compiled import tasks, workflow_template
from local_pipelines import shop

from rtflow import ir
from rtflow.stages import semantics
from rtflow.stages.events import JsonlSource, ListSource, MemorySink
from rtflow.stages.local import RunSummary, auto_approve, auto_reject, main, run_local
from rtflow.stages.local_executor import LocalExecutor, LocalRunError
from rtflow.stages.local_results import EventResult


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RTFLOW_TEST_STATE", str(tmp_path))
    return tmp_path


def run(
    pipeline: Any, bodies: list[Any], **options: Any
) -> tuple[RunSummary, list[dict[str, Any]], list[dict[str, Any]]]:
    out, dead = MemorySink(), MemorySink()
    options.setdefault("log_dir", Path(os.environ["RTFLOW_TEST_STATE"]) / "logs")
    summary = run_local(
        pipeline.build(), ListSource(bodies), output=out, dead_letter=dead, **options
    )
    return summary, out.records, dead.records


# -- a govaluate reading of the compiled `when` text, independent of rtflow.stages.semantics ----

_TOKEN = re.compile(r"\s*('(?:[^']*)'|-?\d+(?:\.\d+)?|true|false|&&|\|\||!=|==|>=|<=|[<>()!])")


def govaluate(expression: str) -> bool:
    python = []
    for token in _TOKEN.findall(expression):
        if token.startswith("'"):
            python.append(repr(token[1:-1]))
        elif re.fullmatch(r"-?\d+(\.\d+)?", token):
            python.append(f"float({token!r})")
        else:
            python.append(
                {"&&": " and ", "||": " or ", "!": " not ", "true": "True", "false": "False"}.get(
                    token, token
                )
            )
    assert "".join(_TOKEN.findall(expression)).replace(" ", "") == expression.replace(" ", "")
    return bool(eval("".join(python), {"__builtins__": {"float": float}}))


def substitute(
    when: str, result: EventResult, inputs: dict[str, str], defaults: dict[str, dict[str, str]]
) -> str:
    def tag(match: re.Match[str]) -> str:
        parts = match[1].split(".")
        if parts[0] == "workflow":
            return inputs[parts[2]]
        task = result.tasks[parts[1]]
        if task.phase == "Succeeded":
            return task.outputs[parts[4]]
        # A task that never ran: its producer default (Argo v4; without one the task errors).
        return defaults[parts[1]][parts[4]]

    return re.sub(r"\{\{([^}]+)\}\}", tag, when)


@pytest.mark.parametrize(
    "order",
    [
        {"amount": 900, "items": ["ab", "cde"]},
        {"amount": 100, "kind": "gift"},
        {"amount": 501, "kind": "gift", "items": ["x"]},
        {"amount": 500},
    ],
)
def test_when_and_skips_agree_with_the_compiled_argo_expressions(order: dict[str, Any]) -> None:
    pipeline = shop.shop.build()
    compiled = tasks(workflow_template(shop.shop))
    inputs = semantics.event_inputs(pipeline, {"order": order})
    with LocalExecutor(pipeline, approver=auto_approve) as executor:
        result = executor.run_event("e", inputs)
    assert result.status == "Succeeded", result.reason
    for name, task in compiled.items():
        phase = result.tasks[name].phase
        deps = task.get("depends", "").split(" && ") if task.get("depends") else []
        if any(result.tasks[d].phase not in ("Succeeded", "Skipped") for d in deps):
            assert phase == "Omitted", name
        elif "when" in task:
            defaults = semantics.producer_defaults(pipeline, pipeline.tasks)
            expected = govaluate(substitute(task["when"], result, inputs, defaults))
            assert (phase != "Skipped") == expected, (name, task["when"], phase)
        else:
            assert phase == "Succeeded", name


def test_tasks_run_after_what_they_depend_on_and_fan_out_aggregates() -> None:
    summary, out, dead = run(
        shop.shop, [{"order": {"amount": 900, "items": ["ab", "cde"]}}], approver=auto_approve
    )
    assert summary.exit_code == 0 and not dead
    (record,) = out
    assert record["outputs"]["price"]["result"] == [
        {"cents": 200, "item": "ab"},
        {"cents": 300, "item": "cde"},
    ]
    assert record["outputs"]["total"]["result"] == 500
    assert record["outputs"]["ship"]["result"] == "shipped normal 900"
    assert record["skipped"] == ["ship-2"]


def test_an_output_of_a_task_that_never_ran_is_its_producer_default_or_an_error() -> None:
    """Argo v4 (the real controller, tests/integration/test_execution_tier.py): a skipped or
    omitted task's output is its template's valueFrom.default (an approval's decision: the
    approval's default); with none, reading it fails the reader, a quoted ``when`` included
    (Argo 3 substituted the tag's own text, which the local run used to copy)."""
    pipeline = shop.shop.build()
    defaults = semantics.producer_defaults(pipeline, pipeline.tasks)
    (gate,) = [t.name for t in pipeline.tasks if pipeline.stage(t.stage).approval is not None]
    assert defaults == {gate: {"decision": "reject"}}
    readable = semantics.readable_outputs(
        {gate: ("Skipped", {}), "parse": ("Omitted", {}), "total": ("Succeeded", {"r": "1"})},
        defaults,
    )
    assert readable == {gate: {"decision": "reject"}, "total": {"r": "1"}}
    absent = ir.Compare(ir.TaskOutput("parse", "kind"), "==", ir.Constant("gift"), quoted=True)
    with pytest.raises(semantics.ValueMissing):
        semantics.evaluate(absent, inputs={}, outputs=readable, workflow={})
    approved = ir.Compare(ir.TaskOutput(gate, "decision"), "==", ir.Constant("approve"), True)
    assert not semantics.evaluate(approved, inputs={}, outputs=readable, workflow={})


def test_fan_out_aggregation_follows_argo() -> None:
    assert semantics.aggregate(['{"a":1}', "2"]) == '[{"a":1},2]'
    assert semantics.aggregate(["x", "2"]) == '["x","2"]'  # one non-JSON text: all strings
    assert semantics.fan_out_items('["a", 1, {"b": 2}]') == ["a", "1", '{"b":2}']


def test_an_approval_denied_skips_what_it_gates() -> None:
    summary, out, _ = run(
        shop.shop, [{"order": {"amount": 900, "items": ["a"]}}], approver=auto_reject
    )
    assert summary.exit_code == 0
    assert out[0]["outputs"]["manager"] == {"decision": "reject"}
    assert "ship" in out[0]["skipped"]


def test_retries_back_off_exponentially_and_are_counted(state: Path) -> None:
    waits: list[float] = []
    summary, out, dead = run(shop.retrying, [{"key": "k1", "failures": 2}], sleep=waits.append)
    assert summary.exit_code == 0, dead
    assert out[0]["outputs"]["flaky"]["result"] == 3
    assert waits == [1.0, 2.0]  # duration 1s, factor 2
    assert (state / "attempts-k1").read_text() == "3"


def test_retries_stop_at_the_limit(state: Path) -> None:
    waits: list[float] = []
    summary, _, dead = run(shop.retrying, [{"key": "k2", "failures": 9}], sleep=waits.append)
    assert summary.failed == 1
    assert waits == [1.0, 2.0, 4.0]
    assert "after 4 attempt(s)" in dead[0]["reason"]


def test_backoff_max_duration_stops_like_argo() -> None:
    from rtflow import ir

    retry = ir.Retry(5, "Always", ir.Backoff("1s", 2, "5s"))
    assert [semantics.backoff_wait(retry, n, elapsed_since_first=0) for n in range(4)] == [
        1.0,
        2.0,
        4.0,
        None,
    ]
    assert semantics.backoff_wait(retry, 1, elapsed_since_first=4.0) is None


def test_a_bad_input_is_not_retried_and_goes_to_the_dead_letter_and_the_run_goes_on(
    state: Path,
) -> None:
    waits: list[float] = []
    summary, out, dead = run(
        shop.retrying,
        [
            {"key": "b1", "failures": -1},
            {"key": "b2"},
            {"key": "b3", "failures": "x"},
            {"other": 1},
        ],
        sleep=waits.append,
    )
    assert (state / "attempts-b1").read_text() == "1" and waits == []
    assert summary.events == 4 and summary.succeeded == 1 and summary.failed == 3
    assert [r["event"] for r in out] == ["event:1"]
    reasons = {r["event"]: r["reason"] for r in dead}
    assert "bad_input" in reasons["event:0"]
    assert "payload" in reasons["event:2"] and "'failures'" in reasons["event:2"]
    assert "no input 'other'" in reasons["event:3"]
    assert summary.exit_code == 1
    assert {e for e, _ in summary.failures} == {"event:0", "event:2", "event:3"}


def test_a_stage_deadline_kills_the_attempt_and_retries() -> None:
    summary, _, dead = run(shop.retrying, [{"key": "d1", "nap": 3.0}])
    assert summary.failed == 1
    assert "timeout" in dead[0]["reason"] and "after 2 attempt(s)" in dead[0]["reason"]


def test_the_pipeline_deadline_fails_the_run() -> None:
    import dataclasses

    pipeline = dataclasses.replace(shop.retrying.build(), deadline_seconds=1)
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipeline,
        ListSource([{"key": "d2", "failures": 1}, {"key": "d3"}]),
        output=out,
        dead_letter=dead,
        log_dir=Path(os.environ["RTFLOW_TEST_STATE"]) / "logs",
    )
    assert summary.failed == 1 and summary.succeeded == 1
    assert "pipeline deadline" in dead.records[0]["reason"]


def test_the_exit_handler_sees_the_status(state: Path) -> None:
    summary, _, _ = run(
        shop.shop, [{"order": {"amount": 10}}, {"order": {"amount": 10, "kind": "explode"}}]
    )
    audits = sorted(p.read_text().split()[0] for p in state.glob("audit-*"))
    assert audits == ["Failed", "Succeeded"]
    assert summary.failed == 1


def test_a_container_stage_is_refused_without_a_stand_in() -> None:
    with pytest.raises(LocalRunError, match="stage 'publish' is a container"):
        run(shop.with_container, [{"amount": 1.0}])


def test_a_container_stage_runs_with_a_stand_in() -> None:
    seen: list[float] = []

    def publish(value: float) -> str:
        seen.append(value)
        return f"receipt-{value}"

    summary, out, _ = run(shop.with_container, [{"amount": 500.0}], stand_ins={"publish": publish})
    assert summary.exit_code == 0
    assert out[0]["outputs"]["publish"] == {"receipt": "receipt-0.5"}
    assert seen == [0.5]


def test_the_stage_timing_table() -> None:
    summary, _, _ = run(shop.shop, [{"order": {"amount": a}} for a in range(20)], max_in_flight=4)
    table = {s.stage: s for s in summary.stages}
    assert table["parse"].count == 20 and table["score"].count == 20
    assert table["parse"].p50_ms <= table["parse"].p99_ms <= table["parse"].max_ms
    text = summary.render()
    assert "p99 ms" in text and "parse" in text


def test_trigger_mapping_reads_dotted_paths() -> None:
    found = semantics.lookup({"body": {"a": {"b.c": [1, {"d": "x"}]}}}, r"body.a.b\.c.1.d")
    assert found == (True, "x")
    assert semantics.lookup({"body": {}}, "body.missing") == (False, None)


def test_main_reads_jsonl_and_names_the_failed_event(tmp_path: Path, capsys: Any) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text('{"order": {"amount": 5}}\nnot json\n{"order": {"amount": 7}}\n')
    dead = tmp_path / "dead.jsonl"
    code = main(
        [
            "tests/local_pipelines/shop.py:shop",
            "--events",
            str(events),
            "--dead-letter",
            str(dead),
            "--auto-approve",
            "--log-dir",
            str(tmp_path / "logs"),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    results = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["event"] for r in sorted(results, key=lambda r: r["event"])] == [
        "events.jsonl:1",
        "events.jsonl:3",
    ]
    (dead_record,) = [json.loads(line) for line in dead.read_text().splitlines()]
    assert dead_record["event"] == "events.jsonl:2"
    assert "failed: events.jsonl:2" in captured.err and "stage" in captured.err
    assert JsonlSource(events).total == 3


def test_main_refuses_a_container_stage_in_one_line(capsys: Any, tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_text('{"amount": 1}\n')
    code = main(["tests/local_pipelines/shop.py:with_container", "--events", str(events)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "'publish'" in err


def test_a_stand_in_may_replace_a_function_stage_and_return_a_dict() -> None:
    summary, out, _ = run(
        shop.shop,
        [{"order": {"amount": 900, "items": ["a", "b", "c"]}}],
        stand_ins={"price": lambda item: {"item": item, "cents": 7}},
        approver=auto_approve,
    )
    assert summary.exit_code == 0
    assert out[0]["outputs"]["total"]["result"] == 21
    assert "price" not in {s.stage for s in summary.stages if s.overhead_p99_ms is not None}


def test_progress_off_a_terminal_is_plain_lines_on_stderr(capsys: Any) -> None:
    """Without a TTY (CI logs, a pipe) progress is whole lines, never carriage returns, and
    the last one is written at the end however short the run."""
    run(shop.retrying, [{"key": f"p{i}"} for i in range(5)], progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("progress: ")]
    assert lines and lines[-1].startswith("progress: 5/5 events  5 ok  0 failed  "), err
    assert "/s average" in lines[-1] and "\r" not in err
