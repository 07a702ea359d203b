"""examples/conversational_rag.py compiles (rtflow compile, exit 0, deterministic), lints
clean (schemas, cross-references, security defaults and the real Argo linters when
provisioned), and says what issue 16 asks of it: text through an embedding model,
retrieval with a Secret-backed DSN, history and remember, a streamed generation (on the stream
plane too), when/otherwise, an approval with a timeout, an http step with a Secret header,
default_timeout and a literal holding outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml
from compiled import ROOT

from rtflow import ir
from rtflow.loader import load_pipelines
from rtflow.stream_ir import value_refs
from rtflow.verify.lint import lint_paths

EXAMPLE = "examples/conversational_rag.py"


def rtflow(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_it_compiles_deterministically_and_lints_clean(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        done = rtflow("compile", EXAMPLE, "-o", str(out))
        assert done.returncode == 0, done.stderr
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    report = lint_paths([first])
    assert report.ok, report.human()
    linted = rtflow("lint", str(first))
    assert linted.returncode == 0, linted.stdout + linted.stderr


def test_it_shows_what_issue_16_lists(tmp_path: Path) -> None:
    (definition,) = load_pipelines(str(ROOT / EXAMPLE))[1]
    pipeline = definition.build()
    stages = {s.name: s for s in pipeline.stages}
    assert pipeline.stream is not None
    # the hot path: history, embed, retrieve, prompt, generate, finish, remember, publish
    assert list(pipeline.stream.hot_tasks) == [
        "history", "retrieve-embed", "retrieve", "build-prompt", "generate-rag-generator",
        "finish", "publish-answer", "remember",
    ]  # fmt: skip
    assert pipeline.stream.inference_batch == (("retrieve-embed", 16),)  # not the generation
    assert set(pipeline.stream.handoff_tasks) == {"review-answer", "escalate", "record-review"}
    approval = stages["review-answer"].approval
    assert approval is not None and approval.timeout_seconds == 900
    assert approval.on_timeout == "approve"
    http = stages["escalate"].http
    assert http is not None and http.method == "POST"
    assert [h.name for h in http.headers if h.secret is not None] == ["Authorization"]
    # a literal holding outputs: the published payload
    publish = next(t for t in pipeline.tasks if t.name == "publish-answer")
    payload = dict(publish.arguments)["payload"]
    assert isinstance(payload, ir.JsonObject)
    read = {
        k for k, v in payload.fields if any(isinstance(r, ir.TaskOutput) for r in value_refs(v))
    }
    assert read == {
        "answer", "sources", "confidence"}  # fmt: skip
    out = tmp_path / "out"
    assert rtflow("compile", EXAMPLE, "-o", str(out)).returncode == 0
    folder = out / "conversational-rag"
    template = yaml.safe_load((folder / "workflowtemplate-conversational-rag.yaml").read_text())
    tasks = {t["name"]: t for t in template["spec"]["templates"][0]["dag"]["tasks"]}
    # otherwise(): the negation of the approval's when, beside it
    assert (
        "!('{{tasks.review-answer.outputs.parameters.decision}}' == 'approve')"
        in (tasks["record-review"]["when"])
    )
    templates = {t["name"]: t for t in template["spec"]["templates"]}
    assert templates["review-answer"]["suspend"]["duration"] == "900"
    assert templates["record-review"]["activeDeadlineSeconds"] == 30  # default_timeout
    assert templates["escalate"]["http"]["headers"][-1]["valueFrom"]["secretKeyRef"] == {
        "name": "helpdesk-api", "key": "bearer"}  # fmt: skip
    worker = yaml.safe_load((folder / "deployment-conversational-rag-stream.yaml").read_text())
    text = yaml.safe_dump(worker)
    assert "RTFLOW_VECTOR_STORE_DSN_FILE" in text and "assistant-db" in text
    assert (folder / "model-repository" / "rag-generator" / "config.pbtxt").read_text().count(
        "decoupled: true") == 1  # fmt: skip
