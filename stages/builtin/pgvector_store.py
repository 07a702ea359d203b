"""PostgreSQL as both stores: pgvector for retrieval, plain tables for conversations.

Why PostgreSQL for sessions too (rather than Redis): a RAG pipeline already runs PostgreSQL for
its vectors, so the conversation needs no second component to deploy, secure, back up and
reach through the NetworkPolicy; and what a session needs is what PostgreSQL gives without
scripting: an append that is atomic with the trim of the oldest turns, serialized per session
by a row lock (concurrent appends to one session all land, none overwrites another), and an
idempotency key per event, so a retried batch appends once.

One connection per thread and connection string, made on first use and kept (a stream worker
serves every event on it; a workflow pod makes one). A connection that breaks is dropped and
the call raises :class:`~rtflow.stages.builtin.stores.StoreUnavailable`; the next call
reconnects.

Tables (``collection`` and ``prefix`` are SQL identifiers, checked at compile time):

* a collection: ``(id text primary key, content text, metadata jsonb, embedding vector(N))``,
  made by :func:`create_collection` (with an HNSW index for the metric), filled by
  :func:`upsert_documents`;
* sessions: ``<prefix>`` (one row per session: the last turn's number, the lock appends take)
  and ``<prefix>_turns`` (``session_id, seq, role, content, request_id``), made by
  :func:`create_session_tables`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

from rtflow.stages.builtin.stores import Document, StoreUnavailable, Turn
from rtflow.stages.runtime import BadInput

if TYPE_CHECKING:
    import psycopg

Metric = Literal["cosine", "l2", "inner_product"]
# pgvector's distance operator and index operator class per metric; the score is the
# similarity made from the distance (higher is closer).
OPERATORS: dict[str, tuple[str, str]] = {
    "cosine": ("<=>", "vector_cosine_ops"),
    "l2": ("<->", "vector_l2_ops"),
    "inner_product": ("<#>", "vector_ip_ops"),
}
SESSIONS_TABLE = "rtflow_sessions"

# Per thread and connection string: a connection runs one transaction at a time, and a stage
# called from several threads at once (a local run's thread pool) must not share one.
_connections: dict[tuple[int, str], psycopg.Connection[Any]] = {}
_lock = threading.Lock()


def _identifier(name: str) -> Any:
    from psycopg import sql

    return sql.Identifier(*name.split("."))


def _vector(values: Sequence[float]) -> str:
    """pgvector's text form; a value that is not a finite number is the event's fault."""
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise BadInput("the embedding holds a value that is not a number") from None
    if not numbers:
        raise BadInput("the embedding is empty")
    if any(n != n or n in (float("inf"), float("-inf")) for n in numbers):
        raise BadInput("the embedding holds NaN or infinity")
    return "[" + ",".join(repr(n) for n in numbers) + "]"


@contextmanager
def transaction(dsn: str, *, atomic: bool = True) -> Iterator[psycopg.Connection[Any]]:
    """This thread's connection for ``dsn``: inside one transaction, committed at the end, or
    with ``atomic=False`` in autocommit (one statement, one round trip: no BEGIN and COMMIT).

    A broken connection, a missing table or any other database failure is
    :class:`StoreUnavailable`; bad data (a vector of the wrong dimension) is
    :class:`~rtflow.stages.runtime.BadInput`. Either rolls the transaction back.
    """
    try:
        import psycopg
        from psycopg import errors
    except ImportError:  # pragma: no cover - the image lacks the [retrieval] extra
        raise StoreUnavailable(
            "psycopg is not installed: pip install 'rtflow[retrieval]'"
        ) from None
    key = (threading.get_ident(), dsn)
    with _lock:
        conn = _connections.get(key)
        if conn is None or conn.closed or conn.broken:
            try:
                conn = psycopg.connect(dsn, connect_timeout=5, autocommit=True)
            except psycopg.Error as exc:
                raise StoreUnavailable(f"cannot connect to the store: {_first_line(exc)}") from None
            _connections[key] = conn
    try:
        if atomic:
            with conn.transaction():
                yield conn
        else:
            yield conn
    except errors.DataException as exc:
        raise BadInput(f"the store refused the value: {_first_line(exc)}") from None
    except psycopg.Error as exc:
        if conn.broken or conn.closed:
            with _lock:
                if _connections.get(key) is conn:
                    del _connections[key]
        raise StoreUnavailable(f"the store failed: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def close_all() -> None:
    """Close every connection this process made (tests; a process exit does it too)."""
    with _lock:
        for conn in _connections.values():
            conn.close()
        _connections.clear()


class PgVectorStore:
    """A :class:`~rtflow.stages.builtin.stores.VectorStore` on PostgreSQL with pgvector."""

    def __init__(self, dsn: str, metric: Metric = "cosine") -> None:
        if metric not in OPERATORS:
            raise ValueError(f"metric {metric!r} is not one of {', '.join(OPERATORS)}")
        self.dsn = dsn
        self.metric = metric

    def search(
        self,
        collection: str,
        embedding: Sequence[float],
        top_k: int,
        where: Mapping[str, str] | None = None,
    ) -> list[Document]:
        from psycopg import sql

        operator = sql.SQL(OPERATORS[self.metric][0])
        vector = _vector(embedding)
        query = sql.SQL(
            "SELECT id, content, metadata, embedding {op} %(v)s::vector AS distance FROM {t} "
            "{filter} ORDER BY embedding {op} %(v)s::vector LIMIT %(k)s"
        ).format(
            op=operator,
            t=_identifier(collection),
            filter=sql.SQL("WHERE metadata @> %(w)s::jsonb" if where else ""),
        )
        params = {"v": vector, "k": top_k, "w": json.dumps(dict(where or {}), sort_keys=True)}
        with transaction(self.dsn, atomic=False) as conn:
            rows = conn.execute(query, params).fetchall()
        return [
            Document(str(i), str(text), self._score(float(distance)), dict(meta or {}))
            for i, text, meta, distance in rows
        ]

    def _score(self, distance: float) -> float:
        # cosine: 1 - distance is the cosine similarity; l2: the negative distance; <#> is the
        # negative inner product, so its negation is the inner product.
        return 1.0 - distance if self.metric == "cosine" else -distance


class PgSessionStore:
    """A :class:`~rtflow.stages.builtin.stores.SessionStore` in two PostgreSQL tables."""

    def __init__(self, dsn: str, prefix: str = SESSIONS_TABLE) -> None:
        self.dsn = dsn
        self.prefix = prefix

    def _tables(self) -> dict[str, Any]:
        return {"s": _identifier(self.prefix), "t": _identifier(f"{self.prefix}_turns")}

    def read(self, session: str, max_turns: int) -> list[Turn]:
        from psycopg import sql

        query = sql.SQL(
            "SELECT role, content FROM {t} WHERE session_id = %s ORDER BY seq DESC LIMIT %s"
        ).format(**self._tables())
        with transaction(self.dsn, atomic=False) as conn:
            rows = conn.execute(query, (_session(session), max_turns)).fetchall()
        return [Turn(str(role), str(text)) for role, text in reversed(rows)]

    def append(
        self, session: str, turns: Sequence[Turn], *, max_turns: int, request_id: str = ""
    ) -> int:
        from psycopg import sql

        tables = self._tables()
        key = _session(session)
        with transaction(self.dsn) as conn:
            # The session's row, locked until commit: appends to one session take turns here.
            (last,) = conn.execute(
                sql.SQL(
                    "INSERT INTO {s} (session_id, last_seq) VALUES (%s, 0) ON CONFLICT "
                    "(session_id) DO UPDATE SET last_seq = {s}.last_seq RETURNING last_seq"
                ).format(**tables),
                (key,),
            ).fetchone() or (0,)
            seen = request_id and conn.execute(
                sql.SQL("SELECT 1 FROM {t} WHERE session_id = %s AND request_id = %s")
                .format(**tables),
                (key, request_id),
            ).fetchone()  # fmt: skip
            if not seen and turns:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        sql.SQL(
                            "INSERT INTO {t} (session_id, seq, role, content, request_id) "
                            "VALUES (%s, %s, %s, %s, %s)"
                        ).format(**tables),
                        [
                            (key, last + n, turn.role, turn.text, request_id)
                            for n, turn in enumerate(turns, start=1)
                        ],
                    )
                last += len(turns)
                update = "UPDATE {s} SET last_seq = %s, updated_at = now() WHERE session_id = %s"
                conn.execute(sql.SQL(update).format(**tables), (last, key))
                conn.execute(
                    sql.SQL("DELETE FROM {t} WHERE session_id = %s AND seq <= %s").format(**tables),
                    (key, last - max_turns),
                )
            (count,) = conn.execute(
                sql.SQL("SELECT count(*) FROM {t} WHERE session_id = %s").format(**tables), (key,)
            ).fetchone() or (0,)
        return int(count)


def _session(session: str) -> str:
    if not isinstance(session, str) or not session.strip():
        raise BadInput("the session id is empty")
    return session


# Set-up: what an operator (or a test, or the example) runs once.


def create_collection(
    dsn: str, collection: str, dimensions: int, metric: Metric = "cosine"
) -> None:
    """The pgvector extension, the collection's table and its HNSW index for ``metric``."""
    from psycopg import sql

    table = _identifier(collection)
    index = _identifier(f"{collection.split('.')[-1]}_embedding_idx")
    with transaction(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (id text PRIMARY KEY, content text NOT NULL, "
                "metadata jsonb NOT NULL DEFAULT '{{}}', embedding vector({n}) NOT NULL)"
            ).format(t=table, n=sql.Literal(dimensions))
        )
        conn.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {i} ON {t} USING hnsw (embedding {ops})").format(
                i=index, t=table, ops=sql.SQL(OPERATORS[metric][1])
            )
        )


def upsert_documents(
    dsn: str,
    collection: str,
    documents: Sequence[tuple[str, str, Sequence[float], Mapping[str, Any]]],
) -> None:
    """Insert or replace ``(id, text, embedding, metadata)`` rows of ``collection``."""
    from psycopg import sql

    with transaction(dsn) as conn, conn.cursor() as cursor:
        cursor.executemany(
            sql.SQL(
                "INSERT INTO {t} (id, content, embedding, metadata) VALUES (%s, %s, %s::vector, "
                "%s::jsonb) ON CONFLICT (id) DO UPDATE SET content = EXCLUDED.content, "
                "embedding = EXCLUDED.embedding, metadata = EXCLUDED.metadata"
            ).format(t=_identifier(collection)),
            [
                (i, text, _vector(vector), json.dumps(dict(meta), sort_keys=True))
                for i, text, vector, meta in documents
            ],
        )


def create_session_tables(dsn: str, prefix: str = SESSIONS_TABLE) -> None:
    """The two tables :class:`PgSessionStore` keeps conversations in."""
    from psycopg import sql

    tables = {"s": _identifier(prefix), "t": _identifier(f"{prefix}_turns")}
    with transaction(dsn) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {s} (session_id text PRIMARY KEY, "
                "last_seq bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())"
            ).format(**tables)
        )
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {t} (session_id text NOT NULL, seq bigint NOT NULL, "
                "role text NOT NULL, content text NOT NULL, request_id text NOT NULL DEFAULT '', "
                "PRIMARY KEY (session_id, seq))"
            ).format(**tables)
        )
