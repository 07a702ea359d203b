"""Conversations in a real PostgreSQL (rtflow.testing.postgres): the session built-ins' store.

Read before generation, appended after, bounded (oldest turns dropped), idempotent per request
id, and concurrent appends to one session from separate processes (each with its own
connection, as stream workers and workflow pods are) all land.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import psycopg
import pytest

from rtflow.stages.builtin import pgvector_store
from rtflow.stages.builtin.pgvector_store import PgSessionStore, create_session_tables
from rtflow.stages.builtin.sessions import session_append, session_history
from rtflow.stages.builtin.stores import SESSION_DSN_ENV, StoreUnavailable, Turn
from rtflow.stages.runtime import BadInput
from rtflow.stages.stream.batch import DependencyError

pytestmark = pytest.mark.integration


@pytest.fixture
def store(database: str) -> PgSessionStore:
    create_session_tables(database)
    return PgSessionStore(database)


def test_a_new_session_is_empty_and_appends_read_back_in_order(store: PgSessionStore) -> None:
    assert store.read("s-1", 10) == []
    assert store.append("s-1", [Turn("user", "hi"), Turn("assistant", "hello")], max_turns=10) == 2
    assert store.append("s-1", [Turn("user", "how are you?")], max_turns=10) == 3
    assert store.read("s-1", 10) == [
        Turn("user", "hi"),
        Turn("assistant", "hello"),
        Turn("user", "how are you?"),
    ]
    assert store.read("s-1", 2) == [Turn("assistant", "hello"), Turn("user", "how are you?")]
    assert store.read("s-2", 10) == []  # sessions are apart


def test_the_oldest_turns_are_dropped_past_the_bound(store: PgSessionStore, database: str) -> None:
    for n in range(7):
        held = store.append("s", [Turn("user", f"q{n}"), Turn("assistant", f"a{n}")], max_turns=4)
    assert held == 4
    assert [t.text for t in store.read("s", 100)] == ["q5", "a5", "q6", "a6"]
    with psycopg.connect(database) as conn:  # dropped from the table, not only from the read
        (rows,) = conn.execute("SELECT count(*) FROM rtflow_sessions_turns").fetchone() or (0,)
    assert rows == 4


def test_a_repeated_request_id_appends_once(store: PgSessionStore) -> None:
    exchange = [Turn("user", "q"), Turn("assistant", "a")]
    assert store.append("s", exchange, max_turns=10, request_id="evt-1") == 2
    assert store.append("s", exchange, max_turns=10, request_id="evt-1") == 2  # the retry
    assert store.append("s", exchange, max_turns=10, request_id="evt-2") == 4
    assert store.append("other", exchange, max_turns=10, request_id="evt-1") == 2


def _append_many(dsn: str, worker: int, count: int, max_turns: int, close: bool = True) -> None:
    store = PgSessionStore(dsn)
    for n in range(count):
        store.append(
            "shared",
            [Turn("user", f"w{worker}-q{n}"), Turn("assistant", f"w{worker}-a{n}")],
            max_turns=max_turns,
        )
    if close:  # a process of its own: its connections end with it
        pgvector_store.close_all()


@pytest.mark.parametrize("max_turns", [10_000, 10])
def test_concurrent_appends_to_one_session_lose_no_turn(
    store: PgSessionStore,
    database: str,
    max_turns: int,
) -> None:
    workers, count = 4, 40
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=spawn) as pool:
        futures = [pool.submit(_append_many, database, w, count, max_turns) for w in range(workers)]
        for future in futures:
            future.result()
    with psycopg.connect(database) as conn:
        rows = conn.execute(
            "SELECT seq, role, content FROM rtflow_sessions_turns WHERE session_id = 'shared' "
            "ORDER BY seq"
        ).fetchall()
        (last,) = conn.execute(
            "SELECT last_seq FROM rtflow_sessions WHERE session_id = 'shared'"
        ).fetchone() or (0,)
    total = workers * count * 2
    assert last == total  # every append counted
    kept = min(total, max_turns)
    assert [r[0] for r in rows] == list(range(total - kept + 1, total + 1))  # no gap, no repeat
    # Each exchange stayed together: a user turn, then its own assistant turn.
    for (_, role_q, q), (_, role_a, a) in zip(rows[-kept::2], rows[-kept + 1 :: 2], strict=True):
        assert (role_q, role_a) == ("user", "assistant")
        assert a == q.replace("-q", "-a")
    if max_turns >= total:
        texts = {r[2] for r in rows}
        assert texts == {f"w{w}-{k}{n}" for w in range(workers) for n in range(count) for k in "qa"}


def test_concurrent_appends_from_threads_of_one_process_lose_no_turn(
    store: PgSessionStore, database: str
) -> None:
    """A local run calls a stage from several threads of one process: each has a connection
    of its own (one connection runs one transaction at a time)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda w: _append_many(database, w, 20, 10_000, close=False), range(6)))
    turns = PgSessionStore(database).read("shared", 10_000)
    assert len(turns) == 6 * 20 * 2
    assert {t.text for t in turns} == {
        f"w{w}-{k}{n}" for w in range(6) for n in range(20) for k in "qa"
    }


def test_the_built_in_stages_read_the_connection_string_from_the_secret_file(
    store: PgSessionStore,
    database: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = tmp_path / "dsn"
    secret.write_text(database + "\n")  # a Secret's file may end in a newline
    monkeypatch.delenv(SESSION_DSN_ENV, raising=False)
    monkeypatch.setenv(f"{SESSION_DSN_ENV}_FILE", str(secret))
    assert session_history(session="u-1", max_turns=4) == ([], "")
    assert session_append(session="u-1", user="hi", assistant="hello", max_turns=4) == 2
    assert session_append(session="u-1", user="and?", assistant="fine", max_turns=3) == 3
    history = session_history(session="u-1", max_turns=4)
    assert history.turns == [
        {"role": "assistant", "text": "hello"},
        {"role": "user", "text": "and?"},
        {"role": "assistant", "text": "fine"},
    ]
    assert history.transcript == "assistant: hello\nuser: and?\nassistant: fine"
    with pytest.raises(BadInput, match="session id is empty"):
        session_history(session=" ", max_turns=4)
    with pytest.raises(BadInput, match="max_turns is 0"):
        session_append(session="u-1", user="a", assistant="b", max_turns=0)


def test_a_store_that_is_down_is_a_dependency_error_not_a_bad_event(
    postgres: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rtflow.stages.stream.launcher import free_port

    monkeypatch.setenv(SESSION_DSN_ENV, f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(StoreUnavailable, match="cannot connect") as raised:
        session_history(session="u-1", max_turns=4)
    assert isinstance(raised.value, DependencyError)
    monkeypatch.delenv(SESSION_DSN_ENV)
    monkeypatch.delenv(f"{SESSION_DSN_ENV}_FILE", raising=False)
    with pytest.raises(StoreUnavailable, match="Secret is not mounted"):
        session_history(session="u-1", max_turns=4)


def test_missing_tables_are_a_dependency_error(database: str) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        PgSessionStore(database).read("s", 4)
    # the connection survived the failed transaction: the next call works
    create_session_tables(database)
    assert PgSessionStore(database).read("s", 4) == []
