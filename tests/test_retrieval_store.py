"""Retrieval against a real PostgreSQL with pgvector (rtflow.testing.postgres): the store and
the built-in ``retrieve`` stage, which reads its connection string from the Secret's file."""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import pytest

from rtflow.stages.builtin.pgvector_store import PgVectorStore, create_collection, upsert_documents
from rtflow.stages.builtin.retrieval import retrieve_documents
from rtflow.stages.builtin.stores import VECTOR_DSN_ENV, StoreUnavailable
from rtflow.stages.runtime import BadInput
from rtflow.stages.stream.batch import DependencyError

pytestmark = pytest.mark.integration

DOCS = [
    ("refunds", "Refunds are paid within 5 days.", [1.0, 0.0, 0.0], {"lang": "en"}),
    ("shipping", "We ship in 48 hours.", [0.0, 1.0, 0.0], {"lang": "en"}),
    ("returns", "Returns within 30 days.", [0.8, 0.6, 0.0], {"lang": "en"}),
    ("remboursement", "Remboursé sous 5 jours.", [0.99, 0.0, 0.14], {"lang": "fr"}),
]


@pytest.fixture
def docs(database: str) -> str:
    create_collection(database, "docs", 3)
    upsert_documents(database, "docs", DOCS)
    return database


def test_the_nearest_documents_come_first_with_their_cosine_similarity(docs: str) -> None:
    found = PgVectorStore(docs).search("docs", [1.0, 0.1, 0.0], 3)
    assert [d.id for d in found] == ["refunds", "remboursement", "returns"]
    query = [1.0, 0.1, 0.0]
    for document in found:
        vector = next(v for i, _, v, _ in DOCS if i == document.id)
        dot = sum(a * b for a, b in zip(query, vector, strict=True))
        expected = dot / (math.hypot(*query) * math.hypot(*vector))
        assert document.score == pytest.approx(expected, abs=1e-6)
    assert found[0].text == "Refunds are paid within 5 days."
    assert found[0].metadata == {"lang": "en"}


def test_top_k_and_a_metadata_filter(docs: str) -> None:
    store = PgVectorStore(docs)
    assert [d.id for d in store.search("docs", [1.0, 0.0, 0.0], 1)] == ["refunds"]
    french = store.search("docs", [0.0, 1.0, 0.0], 5, {"lang": "fr"})
    assert [d.id for d in french] == ["remboursement"]


def test_l2_and_inner_product_rank_by_their_own_measure(database: str) -> None:
    create_collection(database, "near", 2, metric="l2")
    upsert_documents(database, "near", [("a", "a", [0.0, 0.0], {}), ("b", "b", [10.0, 0.0], {})])
    # [9, 0] is nearer b in distance, though a (the origin) has no direction at all.
    (first,) = PgVectorStore(database, "l2").search("near", [9.0, 0.0], 1)
    assert (first.id, first.score) == ("b", pytest.approx(-1.0))
    inner = PgVectorStore(database, "inner_product").search("near", [1.0, 0.0], 2)
    assert [(d.id, d.score) for d in inner] == [("b", pytest.approx(10.0)), ("a", 0.0)]


def test_upserting_replaces_a_document(docs: str) -> None:
    upsert_documents(docs, "docs", [("refunds", "Refunds in 2 days.", [0.0, 0.0, 1.0], {})])
    (found,) = PgVectorStore(docs).search("docs", [0.0, 0.0, 1.0], 1)
    assert (found.id, found.text) == ("refunds", "Refunds in 2 days.")


def test_the_built_in_stage_reads_the_secret_file_and_answers_typed_documents(
    docs: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "dsn"
    secret.write_text(docs + "\n")
    monkeypatch.delenv(VECTOR_DSN_ENV, raising=False)
    monkeypatch.setenv(f"{VECTOR_DSN_ENV}_FILE", str(secret))
    answer = retrieve_documents(embedding=[0.0, 1.0, 0.0], collection="docs", where={}, top_k=2)
    assert answer.ids == ["shipping", "returns"]
    assert answer.texts == ["We ship in 48 hours.", "Returns within 30 days."]
    assert answer.scores == [pytest.approx(1.0), pytest.approx(0.6)]
    assert answer.documents[0] == {
        "id": "shipping",
        "text": "We ship in 48 hours.",
        "score": pytest.approx(1.0),
        "metadata": {"lang": "en"},
    }


def test_a_bad_embedding_is_the_events_fault(docs: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VECTOR_DSN_ENV, docs)
    with pytest.raises(BadInput, match="different vector dimensions"):
        retrieve_documents(embedding=[1.0, 0.0], collection="docs", where={})
    with pytest.raises(BadInput, match="NaN"):
        retrieve_documents(embedding=[math.nan, 0.0, 0.0], collection="docs", where={})
    with pytest.raises(BadInput, match="top_k is 0"):
        retrieve_documents(embedding=[1.0, 0.0, 0.0], collection="docs", where={}, top_k=0)
    # and the connection is still good after the refused statement
    assert retrieve_documents(embedding=[1.0, 0.0, 0.0], collection="docs", where={}).ids


def test_a_missing_collection_or_a_store_that_is_down_is_a_dependency_error(
    docs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtflow.stages.stream.launcher import free_port

    monkeypatch.setenv(VECTOR_DSN_ENV, docs)
    with pytest.raises(StoreUnavailable, match='relation "nothing" does not exist'):
        retrieve_documents(embedding=[1.0, 0.0, 0.0], collection="nothing", where={})
    monkeypatch.setenv(VECTOR_DSN_ENV, f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    with pytest.raises(DependencyError, match="cannot connect"):
        retrieve_documents(embedding=[1.0, 0.0, 0.0], collection="docs", where={})


def test_a_restarted_server_fails_one_call_then_the_next_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The process keeps one connection; a server restart breaks it. The call that finds it
    broken is a DependencyError (the batch is retried) and drops it; the retry connects
    afresh."""
    from rtflow.stages.builtin import pgvector_store
    from rtflow.testing.postgres import PostgresServer

    # A folder of its own the server keeps over the restart (under the temporary folder,
    # which the unprivileged account the server runs as under root can reach).
    folder = Path(tempfile.mkdtemp(prefix="rtflow-postgres-restart-"))
    server = PostgresServer(folder).start()
    try:
        dsn = server.create_database("restarts")
        create_collection(dsn, "docs", 3)
        upsert_documents(dsn, "docs", DOCS)
        monkeypatch.setenv(VECTOR_DSN_ENV, dsn)
        ask = {"embedding": [1.0, 0.0, 0.0], "collection": "docs", "where": {}, "top_k": 1}
        assert retrieve_documents(**ask).ids == ["refunds"]
        server.close()
        with pytest.raises(DependencyError):
            retrieve_documents(**ask)  # down: the broken connection, or no server to reach
        server.start()  # the same folder and port: the data is still there
        # the broken connection was dropped by the failed call: this one connects afresh
        assert retrieve_documents(**ask).ids == ["refunds"]
    finally:
        pgvector_store.close_all()
        server.close()
        shutil.rmtree(folder, ignore_errors=True)
