"""What the retrieval and conversation built-ins need of a store, as two small Protocols.

:class:`VectorStore` answers the nearest documents to an embedding; :class:`SessionStore` keeps
a conversation's turns per session id, bounded. PostgreSQL implements both
(:mod:`rtflow.stages.builtin.pgvector_store`); another vector database (Qdrant, Milvus) plugs in
by implementing :class:`VectorStore` and registering a factory under a kind
(:func:`rtflow.stages.builtin.retrieval.register_vector_store`).

Failures are of two kinds, and the planes treat them differently:

* :class:`StoreUnavailable` (a :class:`~rtflow.stages.stream.batch.DependencyError`): the store
  is down, refuses the connection, or lacks its table. Never the event's fault: the stream plane
  commits nothing past the batch and retries it; the workflow plane fails the step, which its
  retry policy repeats.
* :class:`~rtflow.stages.runtime.BadInput`: this event cannot be served (an embedding of the
  wrong dimension, a session id that is empty). A dead letter on the stream plane.

The connection string never travels as a stage input (Argo shows inputs in its UI): it comes
from a Kubernetes Secret mounted as a file, whose path is in ``<ENV>_FILE`` (:func:`dsn_from_env`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rtflow.stages.runtime import BadInput
from rtflow.stages.stream.batch import DependencyError

VECTOR_DSN_ENV = "RTFLOW_VECTOR_STORE_DSN"
SESSION_DSN_ENV = "RTFLOW_SESSION_STORE_DSN"
ROLES = ("system", "user", "assistant", "tool")


class StoreUnavailable(DependencyError):
    """The store cannot answer now (down, refusing, misconfigured): retry, commit nothing past."""


@dataclass(frozen=True)
class Document:
    """One retrieved document: its id, text, similarity ``score`` (higher is closer: cosine
    similarity, negative distance or inner product, by the store's metric) and metadata."""

    id: str
    text: str
    score: float
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "text": self.text,
            "score": self.score,
            "metadata": dict(self.metadata),
        }


@dataclass(frozen=True)
class Turn:
    """One turn of a conversation: who spoke (``user``, ``assistant``, ``system``, ``tool``)
    and what was said."""

    role: str
    text: str

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise BadInput(f"a turn's role is {self.role!r}, not one of {', '.join(ROLES)}")

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "text": self.text}


class VectorStore(Protocol):
    """Nearest-neighbour search over a collection of embedded documents."""

    def search(
        self,
        collection: str,
        embedding: Sequence[float],
        top_k: int,
        where: Mapping[str, str] | None = None,
    ) -> list[Document]:
        """The ``top_k`` documents of ``collection`` nearest to ``embedding``, closest first;
        ``where``: metadata fields that must equal these values."""
        ...


class SessionStore(Protocol):
    """A conversation's turns per session id, oldest first, at most ``max_turns`` kept."""

    def read(self, session: str, max_turns: int) -> list[Turn]:
        """The last ``max_turns`` turns of ``session``, oldest first (empty for a new one)."""
        ...

    def append(
        self, session: str, turns: Sequence[Turn], *, max_turns: int, request_id: str = ""
    ) -> int:
        """Add ``turns`` after the session's last, atomically, and drop the oldest beyond
        ``max_turns``; the number of turns the session holds then. Concurrent appends to one
        session all land, in some order. A non-empty ``request_id`` seen before for this
        session adds nothing (a retried event appends once)."""
        ...


def dsn_from_env(variable: str, environ: Mapping[str, str] | None = None) -> str:
    """The connection string: ``$<variable>`` (a local run passes the shell's), else the file
    ``$<variable>_FILE`` names (the Secret mounted in the cluster), without a trailing newline."""
    env = os.environ if environ is None else environ
    value = env.get(variable, "")
    if not value:
        path = env.get(f"{variable}_FILE", "")
        if path:
            try:
                value = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise StoreUnavailable(
                    f"cannot read the store's Secret file {path}: {exc}"
                ) from None
    value = value.strip()
    if not value:
        raise StoreUnavailable(
            f"no connection string: neither {variable} nor {variable}_FILE is set "
            "(the store's Secret is not mounted)"
        )
    return value
