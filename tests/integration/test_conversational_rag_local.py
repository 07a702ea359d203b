"""examples/conversational_rag.py run with ``rtflow run --local`` as its README says, every
component real: the example's two models on a Triton rtflow starts (the embedder, and the
decoupled generator streaming its answer), PostgreSQL with pgvector for the handbook and the
sessions (loaded by examples/local/rag_database.py, the connection strings in the variables
the store stages read), the approval, when/otherwise and the http step on the workflow plane;
the same events through the stream plane's worker and a real Kafka broker, exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from components import component_missing

from rtflow.gpu import triton_server as ts
from rtflow.stages.builtin.stores import SESSION_DSN_ENV, VECTOR_DSN_ENV

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "conversational_rag.py"
LOCAL = ROOT / "examples" / "local"
QUESTIONS = [json.loads(line) for line in (LOCAL / "rag_questions.jsonl").read_text().splitlines()]
# The handbook's sentence that answers each question (examples/local/rag_database.py).
ANSWERS = {
    "how long do refunds take": "Refunds are paid to the original card within 5 business "
    "days of approval.",
    "when will my parcel ship": "Standard parcels ship within 48 hours and arrive in 3 to 5 days.",
    "how do I reset my password": "Reset your password from the sign-in page with the link "
    "we email you.",
    "are returns free": "Returns are free within 30 days; print the label from your order page.",
    "can I pay with bitcoin": "I could not find that in the handbook.",
}
ESCALATED = {"can I pay with bitcoin", "do you sell gift cards"}  # the handbook barely helps


@pytest.fixture(scope="module", autouse=True)
def triton_present() -> None:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))


def _run(database: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python examples/local/rag_database.py --dsn DSN -- rtflow run --local ...``."""
    clean = {k: v for k, v in os.environ.items() if k not in {VECTOR_DSN_ENV, SESSION_DSN_ENV}}
    return subprocess.run(
        [sys.executable, str(LOCAL / "rag_database.py"), "--dsn", database, "--",
         sys.executable, "-m", "rtflow.cli", "run", "--local", str(EXAMPLE),
         "--events", str(LOCAL / "rag_questions.jsonl"), "--log-dir", str(tmp_path / "logs"),
         *args],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env={**clean, **env},
    )  # fmt: skip


def _summary(stderr: str) -> dict[str, Any]:
    return dict(json.loads([ln for ln in stderr.splitlines() if ln.startswith("{")][-1]))


def _turns(database: str) -> dict[str, int]:
    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT session_id, count(*) FROM rtflow_sessions_turns GROUP BY 1")
        return {str(s): int(n) for s, n in rows.fetchall()}


def test_the_workflow_plane_answers_reviews_escalates_and_reports_first_tokens(
    database: str, tmp_path: Path
) -> None:
    escalations = tmp_path / "escalations.jsonl"
    done = _run(
        database, tmp_path, "--plane", "workflow", "--stand-ins",
        str(LOCAL / "rag_stand_ins.py"), "--auto-approve", "-o", str(tmp_path / "answers.jsonl"),
        "--format", "json",
        RAG_ESCALATIONS=str(escalations),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = _summary(done.stderr)
    assert (summary["succeeded"], summary["failed"]) == (len(QUESTIONS), 0), summary
    assert summary["generations"] == len(QUESTIONS)
    assert 0 < summary["ttft_p50_ms"] <= summary["ttft_p99_ms"] < summary["latency_p99_ms"]
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"]
    results = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    by_question: dict[str, dict[str, Any]] = {}
    for result in results:
        outputs = result["outputs"]
        question = outputs["build-prompt"]["result"].rsplit("Question: ", 1)[1]
        by_question[question] = outputs
        generated = outputs["generate-rag-generator"]["result"]
        assert outputs["finish"]["text"] == generated["text"] == "".join(generated["tokens"])
        assert 0 < generated["ttft_ms"] < generated["total_ms"]
        # when/otherwise: reviewed (and escalated, the reviewer approving) below the threshold
        reviewed = outputs["finish"]["confidence"] < 0.45
        assert ("review-answer" in outputs) == reviewed == (question in ESCALATED), question
    for question, answer in ANSWERS.items():
        assert by_question[question]["finish"]["text"] == answer, question
    sent = [json.loads(line) for line in escalations.read_text().splitlines()]
    assert {e["question"] for e in sent} == ESCALATED
    assert all(set(e) == {"session", "question", "answer"} for e in sent)
    asked = Counter(q["session"] for q in QUESTIONS)
    assert _turns(database) == {s: 2 * n for s, n in asked.items()}  # each exchange once


def test_the_stream_plane_answers_each_message_once_and_hands_off_the_reviews(
    database: str, tmp_path: Path, kafka_broker: Any
) -> None:
    from stream_harness import exactly_once, read_committed

    from rtflow.loader import load_pipelines
    from rtflow.stream_layout import stream_topics

    (definition,) = load_pipelines(str(EXAMPLE))[1]
    pipeline = definition.build()
    assert pipeline.stream is not None
    kafka_broker.create_topics(*stream_topics(pipeline))
    done = _run(database, tmp_path, "--kafka-brokers", kafka_broker.bootstrap_servers)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = _summary(done.stderr)
    assert (summary["processed"], summary["dead_lettered"]) == (len(QUESTIONS), 0), summary
    assert summary["handed_off"] == len(ESCALATED)
    # time to first token from the workers' histograms: bucket bounds, at most the total
    assert summary["generations"] == len(QUESTIONS)
    assert 0 < summary["ttft_p50_le_ms"] <= summary["ttft_p99_le_ms"] <= 1000
    assert "stream: time to first token (10 generations): p50<=" in done.stderr
    found = read_committed(kafka_broker.bootstrap_servers, "chat-answers", expected=len(QUESTIONS))
    ids = [q["id"] for q in QUESTIONS]
    assert exactly_once([_keyed(r) for r in found], ids) is None
    for record in found:
        answer = json.loads(record.value)
        question = next(q["question"] for q in QUESTIONS if q["id"] == answer["id"])
        if question in ANSWERS:
            assert answer["answer"] == ANSWERS[question], question
        assert record.key == answer["session"]
    handed = read_committed(
        kafka_broker.bootstrap_servers, pipeline.stream.handoff_topic or "", expected=2
    )
    assert sorted(json.loads(r.value)["inputs"]["question"] for r in handed) == sorted(ESCALATED)


def _keyed(record: Any) -> Any:
    """The answer's message id as the key (the topic is keyed by session)."""
    from stream_harness import Read

    value = json.loads(record.value)
    return Read(value["id"], record.value, record.headers, record.partition, record.offset)
