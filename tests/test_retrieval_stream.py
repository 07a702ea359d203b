"""Retrieval and conversations on the stream plane: the hot path of
tests/local_pipelines/rag.py (history, embed, retrieve, answer, remember, publish) run by the
stream worker's plan over a batch, against the real Triton (CPU) and the real PostgreSQL with
pgvector, with the workers' Secret-file environment. A store that is down fails the batch (a
DependencyError: nothing produced, the worker retries it), never dead-letters its events; a
retried batch appends each exchange once (the event's id is the request id)."""

from __future__ import annotations

import json
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
from rtflow.stages.stream.launcher import free_port
from rtflow.stages.stream.plan import DependencyError, Message, Plan

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_for(rag.rag_stream.build(), folder) as srv:
        yield srv


@pytest.fixture
def plan(
    server: TritonServer, database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Plan:
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
    secret = tmp_path / "dsn"  # as the worker's Secret mount gives it
    secret.write_text(database + "\n")
    for variable in (VECTOR_DSN_ENV, SESSION_DSN_ENV):
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.setenv(f"{variable}_FILE", str(secret))
    built = Plan(rag.rag_stream.build())
    built.bind_triton({rag.SERVER.name: server.grpc_url})
    return built


def _messages(*events: tuple[str, str, str], offset: int = 0) -> list[Message]:
    return [
        Message(
            "questions",
            0,
            offset + n,
            json.dumps({"id": i, "session": s, "question": q}).encode(),
            s.encode(),
            [],
            0,
        )
        for n, (i, s, q) in enumerate(events)
    ]


def _turns(dsn: str) -> list[tuple[str, int, str]]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT session_id, seq, content FROM rtflow_sessions_turns ORDER BY 1, 2"
        ).fetchall()
    return [(str(s), int(n), str(c)) for s, n, c in rows]


def test_the_hot_path_retrieves_answers_and_remembers(plan: Plan, database: str) -> None:
    first = plan.execute(
        _messages(("q1", "ada", "when is my refund paid"), ("q2", "bob", "where is my parcel"))
    )
    assert not first.dead_lettered
    published = [json.loads(r.value) for r in first.records if r.topic == "answers"]
    assert published == [
        {
            "session": "ada",
            "ids": ["refunds", "hours"],
            "answer": "when is my refund paid -> Refunds are paid within 5 days. | We open at 9. "
            "(0 earlier turns)",
        },
        {
            "session": "bob",
            "ids": ["shipping", "hours"],
            "answer": "where is my parcel -> Parcels ship in 48 hours. | We open at 9. "
            "(0 earlier turns)",
        },
    ]
    second = plan.execute(_messages(("q3", "ada", "is the money refunded"), offset=2))
    (answer,) = [json.loads(r.value)["answer"] for r in second.records if r.topic == "answers"]
    assert answer.endswith("(2 earlier turns)")
    assert [(s, n) for s, n, _ in _turns(database)] == [
        ("ada", 1),
        ("ada", 2),
        ("ada", 3),
        ("ada", 4),
        ("bob", 1),
        ("bob", 2),
    ]


def test_a_retried_batch_appends_each_exchange_once(plan: Plan, database: str) -> None:
    batch = _messages(("q1", "ada", "my refund"), ("q2", "ada", "my parcel"))
    plan.execute(batch)
    plan.execute(batch)  # the same batch again, as after a commit that failed
    assert [(s, n, c.split(" -> ")[0]) for s, n, c in _turns(database)] == [
        ("ada", 1, "my refund"),
        ("ada", 2, "my refund"),
        ("ada", 3, "my parcel"),
        ("ada", 4, "my parcel"),
    ]


def test_a_store_that_is_down_fails_the_batch_and_dead_letters_nothing(
    plan: Plan, monkeypatch: pytest.MonkeyPatch
) -> None:
    down = f"postgresql://postgres@127.0.0.1:{free_port()}/gone"
    monkeypatch.setenv(SESSION_DSN_ENV, down)  # over the file: the session store is down
    with pytest.raises(DependencyError, match="cannot connect to the store"):
        plan.execute(_messages(("q1", "ada", "my refund")))
    monkeypatch.delenv(SESSION_DSN_ENV)
    # back up: the same batch goes through
    result = plan.execute(_messages(("q1", "ada", "my refund")))
    assert not result.dead_lettered
    assert [r.topic for r in result.records] == ["answers"]


def test_an_event_the_store_refuses_is_dead_lettered_and_the_batch_goes_on(
    plan: Plan, database: str
) -> None:
    result = plan.execute(
        _messages(("q1", " ", "my refund"), ("q2", "ada", "my refund"))  # an empty session id
    )
    (dead,) = [r for r in result.records if r.topic != "answers"]
    headers = dict(dead.headers)
    assert headers["rtflow-reason"] == b"bad_input"
    assert headers["rtflow-stage"] == b"history"
    assert b"session id is empty" in headers["rtflow-error"]
    assert [json.loads(r.value)["session"] for r in result.records if r.topic == "answers"] == [
        "ada"
    ]
    assert [s for s, _, _ in _turns(database)] == ["ada", "ada"]
