"""Time limits in the language: ``approval(timeout=, on_timeout=)`` (Argo's ``suspend.duration``,
the decision from the output's ``valueFrom.default`` when it passes) and the pipeline's
``default_timeout`` (every step without its own deadline gets it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import strict_schema
from compiled import compile_docs, templates, workflow_template
from local_pipelines import language, scoring

import rtflow
from rtflow.stages.approvals import ApprovalRequest, auto_approve, auto_reject
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import RunSummary, run_local


def run(
    pipeline: Any, bodies: list[Any], tmp_path: Path, **options: Any
) -> tuple[RunSummary, list[dict[str, Any]], list[dict[str, Any]]]:
    out, dead = MemorySink(), MemorySink()
    built = pipeline if isinstance(pipeline, rtflow.ir.Pipeline) else pipeline.build()
    summary = run_local(
        built, ListSource(bodies), output=out, dead_letter=dead, log_dir=tmp_path, **options
    )
    return summary, out.records, dead.records


# -- approval timeout -------------------------------------------------------------------------


def test_the_approval_suspends_for_its_timeout_and_defaults_to_on_timeout() -> None:
    review = templates(workflow_template(language.gated))["review"]
    assert review["suspend"] == {"duration": "1"}
    # Argo v4.1's executeSuspend: when the duration passes, OverrideOutputParametersWithDefault
    # gives every output not supplied its valueFrom.default, then marks the node Succeeded.
    assert review["outputs"]["parameters"] == [
        {"name": "decision", "valueFrom": {"supplied": {}, "default": "approve"}}
    ]
    # what the UI offers first stays the approval's default
    (offered,) = review["inputs"]["parameters"]
    assert offered["default"] == "reject" and offered["enum"] == ["approve", "reject"]


def test_without_a_timeout_nothing_changes() -> None:
    @rtflow.pipeline(name="plain-gate")
    def plain_gate(amount: float) -> None:
        rtflow.approval("review", after=[language.score(amount)])

    review = templates(workflow_template(plain_gate))["review"]
    assert review["suspend"] == {}
    assert review["outputs"]["parameters"][0]["valueFrom"]["default"] == "reject"


def _never_answers() -> tuple[Any, threading.Event]:
    release = threading.Event()
    asked: list[ApprovalRequest] = []

    def approver(request: ApprovalRequest) -> str:
        asked.append(request)
        release.wait(30)
        return "reject"

    approver.asked = asked  # type: ignore[attr-defined]
    return approver, release


def test_an_unanswered_approval_takes_on_timeout_when_its_timeout_passes(tmp_path: Path) -> None:
    approver, release = _never_answers()
    try:
        started = time.monotonic()
        summary, out, dead = run(language.gated, [{"amount": 90}], tmp_path, approver=approver)
        took = time.monotonic() - started
    finally:
        release.set()
    assert not dead and summary.succeeded == 1, dead
    (request,) = approver.asked
    assert request.timeout_seconds == 1 and request.on_timeout == "approve"
    assert 1.0 <= took < 10, took
    (record,) = out
    assert record["ms"] >= 1000  # the workflow waited the approval's timeout
    assert record["outputs"]["review"] == {"decision": "approve"}
    assert record["outputs"]["act"] == {"result": "acted on approve"}
    assert "low" in record["skipped"]


@pytest.mark.parametrize(
    ("approver", "decision", "ran", "skipped"),
    [(auto_approve, "approve", "act", "low"), (auto_reject, "reject", "low", "act")],
)
def test_an_answer_within_the_timeout_is_the_decision(
    approver: Any, decision: str, ran: str, skipped: str, tmp_path: Path
) -> None:
    summary, out, _ = run(language.gated, [{"amount": 90}], tmp_path, approver=approver)
    (record,) = out
    assert record["ms"] < 1000  # the run did not wait for the timeout
    assert summary.succeeded == 1
    assert record["outputs"]["review"] == {"decision": decision}
    assert ran in record["outputs"] and skipped in record["skipped"]


def test_a_slow_answer_inside_the_timeout_counts(tmp_path: Path) -> None:
    def slow(request: ApprovalRequest) -> str:
        time.sleep(0.3)
        return "reject"

    _, out, _ = run(language.gated, [{"amount": 90}], tmp_path, approver=slow)
    assert out[0]["outputs"]["review"] == {"decision": "reject"}


def test_the_workflow_deadline_before_the_approval_timeout_fails_the_run(tmp_path: Path) -> None:
    @rtflow.pipeline(name="short-run", deadline=1)
    def short_run(amount: float) -> None:
        rtflow.approval(
            "review", timeout="10m", on_timeout="approve", after=[language.score(amount)]
        )

    approver, release = _never_answers()
    try:
        summary, _, dead = run(short_run, [{"amount": 1}], tmp_path, approver=approver)
    finally:
        release.set()
    assert summary.failed == 1
    assert "pipeline deadline" in dead[0]["reason"]


@pytest.mark.parametrize(
    ("options", "field", "problem"),
    [
        ({"timeout": "1h", "on_timeout": "maybe"}, "on_timeout", "'maybe' is not one of"),
        ({"on_timeout": "approve"}, "on_timeout", "has no timeout"),
        ({"timeout": "soon"}, "timeout", "'soon' is not a positive duration"),
        ({"timeout": 0}, "timeout", "not a positive duration"),
    ],
)
def test_a_wrong_timeout_fails_in_one_line(
    options: dict[str, Any], field: str, problem: str
) -> None:
    @rtflow.pipeline(name="bad-gate")
    def bad_gate(amount: float) -> None:
        rtflow.approval("review", after=[language.score(amount)], **options)

    with pytest.raises(rtflow.DefinitionError) as caught:
        bad_gate.build()
    error = caught.value
    assert (error.pipeline, error.stage, error.field) == ("bad-gate", "review", field)
    assert problem in error.problem and "\n" not in str(error)


# -- default_timeout --------------------------------------------------------------------------


def test_every_step_without_its_own_deadline_gets_the_default() -> None:
    made = templates(workflow_template(language.deadlines))
    assert made["nap"]["activeDeadlineSeconds"] == 1
    assert made["patient"]["activeDeadlineSeconds"] == 30  # its own timeout wins


def test_the_default_reaches_http_and_inference_steps_but_not_approvals() -> None:
    @rtflow.pipeline(name="defaults", default_timeout="45s", namespace="scoring")
    def defaults(features: list[float]) -> None:
        scored = rtflow.infer(scoring.SERVER, scoring.FRAUD_SCORER, {"features": features})
        own = rtflow.infer(
            scoring.SERVER, scoring.FRAUD_SCORER, {"features": features}, name="own", timeout=3
        )
        gate = rtflow.approval("gate", after=[scored, own])
        rtflow.http("https://hooks.example.com/done", name="done").after(gate)
        language.always(0.5).after(gate)

    made = templates(workflow_template(defaults))
    assert made["infer-fraud-scorer"]["http"]["timeoutSeconds"] == 45
    assert made["own"]["http"]["timeoutSeconds"] == 3
    assert made["done"]["http"]["timeoutSeconds"] == 45
    assert made["always"]["activeDeadlineSeconds"] == 45
    assert "activeDeadlineSeconds" not in made["gate"]
    for doc in compile_docs(defaults):
        assert strict_schema.errors_any(doc) == [], doc["metadata"]["name"]


def test_without_a_default_the_old_defaults_stay() -> None:
    made = templates(workflow_template(scoring.scoring))
    assert made["score"]["http"]["timeoutSeconds"] == 1
    plain = templates(workflow_template(language.branches))
    assert "activeDeadlineSeconds" not in plain["score"]


def test_the_local_run_enforces_the_default(tmp_path: Path) -> None:
    summary, out, dead = run(language.deadlines, [{"seconds": 0.1}, {"seconds": 2.5}], tmp_path)
    assert summary.succeeded == 1 and summary.failed == 1
    assert out[0]["outputs"]["nap"] == {"result": 0.1}
    (failed,) = dead
    assert "task nap failed" in failed["reason"] and "timeout" in failed["reason"]


def test_a_wrong_default_fails_in_one_line() -> None:
    @rtflow.pipeline(name="bad-default", default_timeout="whenever")
    def bad_default(seconds: float) -> None:
        language.nap(seconds)

    with pytest.raises(rtflow.DefinitionError) as caught:
        bad_default.build()
    error = caught.value
    assert (error.pipeline, error.stage, error.field) == ("bad-default", "nap", "default_timeout")


def _request(timeout: int | None) -> ApprovalRequest:
    return ApprovalRequest(
        "gated", "review", "event:0", "gated-abcde", ("approve", "reject"), "reject", "approve",
        None, timeout_seconds=timeout, on_timeout="approve" if timeout else None,
    )  # fmt: skip


def _drain(fd: int) -> str:
    """Everything the terminal has printed so far (it arrives in several reads)."""
    import os
    import select

    text = b""
    while select.select([fd], [], [], 0.3)[0]:
        text += os.read(fd, 4096)
    return text.decode()


def test_the_terminal_approver_stops_asking_at_the_timeout() -> None:
    import os

    from rtflow.stages.approvals import terminal_approver

    master, replica = os.openpty()
    try:
        ask = terminal_approver(os.ttyname(replica))
        started = time.monotonic()
        assert ask(_request(1)) == "approve"  # nobody typed: on_timeout
        assert 1.0 <= time.monotonic() - started < 5
        asked = _drain(master)
        assert "choose approve/reject [reject]" in asked and "no answer within 1 s" in asked
        os.write(master, b"reject\n")
        assert ask(_request(30)) == "reject"  # an answer in time is the decision
        os.write(master, b"maybe\napprove\n")
        assert ask(_request(None)) == "approve"  # no timeout: asks until a choice
        assert "'maybe' is not one of approve/reject" in _drain(master)
    finally:
        os.close(master)
        os.close(replica)
