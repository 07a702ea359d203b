"""The retrieval built-in: the documents of a vector store nearest to an embedding.

``rtflow.retrieve`` (:mod:`rtflow.retrieval`) records two steps: an inference step that embeds
the query on Triton (an ordinary ``rtflow.infer``: an Argo http step on the workflow plane,
micro-batched gRPC on the stream plane) and this stage, which takes the embedding's flat data
and asks the store. It is an ordinary ``@rtflow.stage`` function, so both planes run it with
the same runtime: a pod of its own image on the workflow plane, a call inside the fused worker
on the stream plane.

The answer is typed (:class:`Retrieved`): ``texts`` (``list[str]``) feeds a prompt as it is,
``documents`` carries each hit's id, text, score and metadata, ``scores`` and ``ids`` the rest.
The store's connection string comes from its Secret, mounted as a file
(:func:`~rtflow.stages.builtin.stores.dsn_from_env`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from rtflow.options import Backoff, Retry
from rtflow.stage import stage
from rtflow.stages.builtin import image
from rtflow.stages.builtin.pgvector_store import OPERATORS, PgVectorStore
from rtflow.stages.builtin.stores import VECTOR_DSN_ENV, VectorStore, dsn_from_env
from rtflow.stages.runtime import BadInput

VectorStoreFactory = Callable[[str, str], VectorStore]
"""Makes a store from its connection string and metric."""

_factories: dict[str, VectorStoreFactory] = {
    "pgvector": lambda dsn, metric: PgVectorStore(dsn, metric),  # type: ignore[arg-type]
}
_stores: dict[tuple[str, str, str], VectorStore] = {}
_lock = threading.Lock()

FUNCTION = "rtflow.stages.builtin.retrieval:retrieve_documents"
METRICS = tuple(OPERATORS)


def register_vector_store(kind: str, factory: VectorStoreFactory) -> None:
    """Let ``rtflow.VectorStore(kind=...)`` name another store (Qdrant, Milvus...): ``factory``
    makes it from the connection string and the metric. Register it in a module the stage's
    image imports (the stage's own module, say)."""
    _factories[kind] = factory


def vector_store(kind: str, dsn: str, metric: str) -> VectorStore:
    """The process's store for ``kind``, ``dsn`` and ``metric``, made once."""
    with _lock:
        key = (kind, dsn, metric)
        if key not in _stores:
            if kind not in _factories:
                raise BadInput(f"no vector store of kind {kind!r} is registered in this image")
            _stores[key] = _factories[kind](dsn, metric)
        return _stores[key]


class Retrieved(NamedTuple):
    """The nearest documents, closest first."""

    documents: list[dict[str, Any]]  # {"id", "text", "score", "metadata"}
    texts: list[str]
    scores: list[float]
    ids: list[str]


@stage(
    name="retrieve",
    image=image("retrieval"),
    retry=Retry(limit=5, policy="Always", backoff=Backoff("1s", 2, "1m")),
    timeout="1m",
)
def retrieve_documents(
    embedding: list[float],
    collection: str,
    where: dict[str, Any],
    top_k: int = 4,
    metric: str = "cosine",
    store: str = "pgvector",
) -> Retrieved:
    """The ``top_k`` documents of ``collection`` nearest to ``embedding`` whose metadata holds
    ``where``; the store from ``$RTFLOW_VECTOR_STORE_DSN`` (or the Secret file it names)."""
    if top_k < 1:
        raise BadInput(f"top_k is {top_k}: ask for at least one document")
    found = vector_store(store, dsn_from_env(VECTOR_DSN_ENV), metric).search(
        collection, embedding, top_k, {str(k): str(v) for k, v in where.items()}
    )
    return Retrieved(
        documents=[d.as_dict() for d in found],
        texts=[d.text for d in found],
        scores=[d.score for d in found],
        ids=[d.id for d in found],
    )
