"""RAG with a conversation, end to end on this machine: ``rtflow run --local``'s executor runs
tests/local_pipelines/rag.py with the real Triton (the nvidia-pytriton wheel's, on CPU) serving
the embedding model and the real PostgreSQL with pgvector holding the documents and the
sessions, each store's connection string given as the cluster's Secret file would give it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
from rtflow.stages.events import Event, MemorySink
from rtflow.stages.local import run_local

pytestmark = pytest.mark.integration

DOCS = [
    ("refunds", "Refunds are paid within 5 days.", [1.0, 0.0, 0.2], {}),
    ("shipping", "Parcels ship in 48 hours.", [0.0, 1.0, 0.1], {}),
    ("hours", "We open at 9.", [0.1, 0.05, 1.0], {}),  # second nearest to either topic
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_for(rag.rag.build(), folder) as srv:
        yield srv


@pytest.fixture
def stores(database: str, tmp_path: Path) -> dict[str, dict[str, str | None]]:
    """The documents and the session tables, and each store stage's environment: the
    connection string in a file, as the Secret's mount gives it (``<ENV>_FILE``)."""
    create_collection(database, "docs", 3)
    upsert_documents(database, "docs", DOCS)
    create_session_tables(database)
    secret = tmp_path / "rag-db-dsn"
    secret.write_text(database + "\n")
    return {
        "retrieve": {f"{VECTOR_DSN_ENV}_FILE": str(secret), VECTOR_DSN_ENV: None},
        "history": {f"{SESSION_DSN_ENV}_FILE": str(secret), SESSION_DSN_ENV: None},
        "remember": {f"{SESSION_DSN_ENV}_FILE": str(secret), SESSION_DSN_ENV: None},
    }


def test_each_answer_reads_the_nearest_documents_and_the_bounded_history(
    server: TritonServer,
    stores: dict[str, dict[str, str | None]],
    database: str,
    tmp_path: Path,
) -> None:
    questions = [
        ("ada", "when is my refund paid"),
        ("bob", "where is my parcel shipping"),
        ("ada", "is the money refunded"),
        ("ada", "and the delivery of my parcel"),
    ]
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        rag.rag.build(),
        [Event(f"e{i}", {"session": s, "question": q}) for i, (s, q) in enumerate(questions)],
        output=out,
        dead_letter=dead,
        max_in_flight=1,  # one after another: each reads what the one before appended
        triton=server,
        log_dir=tmp_path / "logs",
        stage_env=stores,
    )
    assert summary.failed == 0, dead.records
    answers = {r["event"]: r["outputs"]["answer"]["result"] for r in out.records}
    assert answers == {
        "e0": "when is my refund paid -> Refunds are paid within 5 days. | We open at 9. "
        "(0 earlier turns)",
        "e1": "where is my parcel shipping -> Parcels ship in 48 hours. | We open at 9. "
        "(0 earlier turns)",
        "e2": "is the money refunded -> Refunds are paid within 5 days. | We open at 9. "
        "(2 earlier turns)",
        # ada's history is bounded at 4 turns (rag.SESSIONS.max_turns)
        "e3": "and the delivery of my parcel -> Parcels ship in 48 hours. | We open at 9. "
        "(4 earlier turns)",
    }
    retrieved = out.records[0]["outputs"]["retrieve"]
    assert retrieved["ids"] == ["refunds", "hours"]
    assert retrieved["scores"][0] > retrieved["scores"][1]
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT session_id, seq, role, content FROM rtflow_sessions_turns ORDER BY 1, 2"
        ).fetchall()
    assert [(s, n, r) for s, n, r, _ in rows] == [
        ("ada", 3, "user"),
        ("ada", 4, "assistant"),
        ("ada", 5, "user"),
        ("ada", 6, "assistant"),
        ("bob", 1, "user"),
        ("bob", 2, "assistant"),
    ]
    assert rows[3][3] == answers["e3"]
