"""``rtflow run --local`` on the RAG pipeline's stream plane, every component real: events
through a Kafka broker, a worker process (exactly once), the embedding model on Triton over
gRPC, PostgreSQL with pgvector for the documents and the sessions (the connection string in a
file, as the worker's Secret mount gives it), the answers published in the transaction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from components import local_triton_for
from local_pipelines import rag

from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.pgvector_store import (
    create_collection,
    create_session_tables,
    upsert_documents,
)
from rtflow.stages.builtin.stores import SESSION_DSN_ENV, VECTOR_DSN_ENV

pytestmark = pytest.mark.integration

QUESTIONS = ["when is my refund paid", "where is my parcel", "is the money refunded", "delivery"]
SESSIONS = ["ada", "bob", "eve"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_for(rag.rag_stream.build(), folder) as srv:
        yield srv


def test_questions_through_the_broker_are_answered_and_each_exchange_kept_once(
    server: TritonServer, kafka_broker: Any, database: str, tmp_path: Path
) -> None:
    from stream_harness import read_committed

    from rtflow.stream_layout import stream_topics

    create_collection(database, "docs", 3)
    upsert_documents(
        database,
        "docs",
        [
            ("refunds", "Refunds are paid within 5 days.", [1.0, 0.0, 0.2], {}),
            ("shipping", "Parcels ship in 48 hours.", [0.0, 1.0, 0.1], {}),
            ("hours", "We open at 9.", [0.1, 0.05, 1.0], {}),
        ],
    )
    create_session_tables(database)
    secret = tmp_path / "rag-db-dsn"
    secret.write_text(database + "\n")
    pipeline = rag.rag_stream.build()
    kafka_broker.create_topics(*stream_topics(pipeline))
    sent = [
        {"id": f"{s}-{n}", "session": s, "question": q}
        for n, q in enumerate(QUESTIONS)
        for s in SESSIONS
    ]
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in sent))
    env = {k: v for k, v in os.environ.items() if k not in {VECTOR_DSN_ENV, SESSION_DSN_ENV}}
    env |= {f"{VECTOR_DSN_ENV}_FILE": str(secret), f"{SESSION_DSN_ENV}_FILE": str(secret)}
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         f"{Path(rag.__file__)}:rag_stream", "--events", str(events),
         "--kafka-brokers", kafka_broker.bootstrap_servers,
         "--triton-grpc-url", server.grpc_url, "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads([ln for ln in done.stderr.splitlines() if ln.startswith("{")][-1])
    assert (summary["processed"], summary["dead_lettered"]) == (len(sent), 0), summary
    found = [json.loads(r.value) for r in read_committed(
        kafka_broker.bootstrap_servers, "answers", expected=len(sent))]  # fmt: skip
    assert len(found) == len(sent)
    nearest = dict(zip(QUESTIONS, ["refunds", "shipping"] * 2, strict=True))
    for answer in found:
        question = answer["answer"].split(" -> ")[0]
        assert answer["ids"] == [nearest[question], "hours"], answer
    with psycopg.connect(database) as conn:
        counts = dict(conn.execute("SELECT session_id, last_seq FROM rtflow_sessions").fetchall())
        kept = conn.execute(
            "SELECT session_id, count(*) FROM rtflow_sessions_turns GROUP BY 1"
        ).fetchall()
    # every exchange appended once (2 turns each), the oldest dropped past rag.SESSIONS' 4
    assert counts == {s: 2 * len(QUESTIONS) for s in SESSIONS}
    assert dict(kept) == dict.fromkeys(SESSIONS, 4)
