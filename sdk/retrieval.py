"""Retrieval and conversations in a pipeline: ``rtflow.retrieve``, ``rtflow.history`` and
``rtflow.remember``, over stores declared with ``rtflow.VectorDatabase`` and
``rtflow.SessionDatabase``.

``rtflow.retrieve(server, model, query, store=..., collection=...)`` records two steps: an
``rtflow.infer`` of the embedding model (``<name>-embed``: an http step on the workflow plane,
micro-batched gRPC on the stream plane) and the built-in ``retrieve`` stage fed the embedding
output's flat data (:mod:`rtflow.stages.builtin.retrieval`). ``history`` and ``remember`` are
the built-in session stages (:mod:`rtflow.stages.builtin.sessions`). All are ordinary function
stages to the compiler, so both planes run them with the same runtime.

A store declares where it is and how it is reached, and nothing else: its connection string is
a key of a Kubernetes Secret (``dsn=rtflow.SecretKey(...)``), mounted into the stage as a file
(``RTFLOW_VECTOR_STORE_DSN_FILE`` / ``RTFLOW_SESSION_STORE_DSN_FILE``); its address block and
port (``egress=rtflow.Egress(...)``) become the pipeline's egress NetworkPolicy flow, added only
when a stage uses the store. Everything is checked when the pipeline is built: a bad store,
collection, ``top_k`` or tensor name is a one-line :class:`~rtflow.errors.DefinitionError`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any, cast

from rtflow.egress import Egress, check_egress
from rtflow.errors import DefinitionError
from rtflow.options import Secret
from rtflow.recording import infer
from rtflow.stage import StageDef, configure
from rtflow.stages.builtin.retrieval import METRICS, Retrieved, retrieve_documents
from rtflow.stages.builtin.sessions import History, session_append, session_history
from rtflow.stages.builtin.stores import SESSION_DSN_ENV, VECTOR_DSN_ENV
from rtflow.triggers import SecretKey

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$")
_KIND = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
MAX_TOP_K = 1000

__all__ = [
    "History",
    "Retrieved",
    "SessionDatabase",
    "VectorDatabase",
    "history",
    "remember",
    "retrieve",
    "stage_egress",
]


@dataclass(frozen=True)
class VectorDatabase:
    """A vector store: ``dsn`` the Secret key holding its connection string, ``egress`` its
    address block and port, ``kind`` the store (``pgvector``; another one registered with
    :func:`rtflow.stages.builtin.retrieval.register_vector_store`), ``metric`` how nearness is
    measured (``cosine``, ``l2``, ``inner_product``)."""

    dsn: SecretKey
    egress: Egress
    kind: str = "pgvector"
    metric: str = "cosine"


@dataclass(frozen=True)
class SessionDatabase:
    """Where conversations are kept (PostgreSQL): ``dsn`` and ``egress`` as for
    :class:`VectorDatabase`; ``max_turns`` the bound (the oldest turns dropped past it);
    ``prefix`` the tables' name (``<prefix>`` and ``<prefix>_turns``)."""

    dsn: SecretKey
    egress: Egress
    max_turns: int = 20
    prefix: str = "rtflow_sessions"


@dataclass(eq=False)
class StoreStage(StageDef):
    """A built-in stage bound to a store: its egress joins the pipeline's."""

    egress: tuple[Egress, ...] = ()


def stage_egress(
    definitions: Iterable[object], declared: tuple[Egress, ...] = ()
) -> tuple[Egress, ...]:
    """The pipeline's ``declared`` egress, then the rules of the store stages among
    ``definitions`` it does not already hold, once each, sorted."""
    found = {rule for d in definitions for rule in getattr(d, "egress", ())} - set(declared)
    return (*declared, *sorted(found, key=lambda e: (e.cidr, e.ports, e.protocol)))


def _problem(problem: str, fix: str, field: str, stage: str) -> DefinitionError:
    return DefinitionError(problem, fix=fix, field=field, stage=stage)


def _store_parts(store: object, expected: type, env: str, stage: str) -> tuple[Secret, Egress]:
    """The Secret mount and the egress rule of ``store``, checked."""
    what = expected.__name__
    if not isinstance(store, expected):
        raise _problem(
            f"store is a {type(store).__name__}, not rtflow.{what}",
            f"declare it with rtflow.{what}(dsn=rtflow.SecretKey(...), egress=rtflow.Egress(...))",
            "store",
            stage,
        )
    dsn = store.dsn  # type: ignore[attr-defined]
    if not isinstance(dsn, SecretKey) or not dsn.secret or not dsn.key:
        raise _problem(
            f"the store's dsn is {dsn!r}, not a key of a Secret",
            "write dsn=rtflow.SecretKey('<secret>', '<key>'): a connection string holds a password",
            "store.dsn",
            stage,
        )
    try:
        (egress,) = check_egress([store.egress])  # type: ignore[attr-defined]
    except DefinitionError as error:
        raise _problem(error.problem, error.fix, "store.egress", stage) from None
    return Secret(env=env, secret=dsn.secret, key=dsn.key), egress


def _bind_store(stage_fn: object, name: str, secret: Secret, egress: Egress) -> StoreStage:
    copy = configure(cast(Any, stage_fn), name=name, secrets=[secret])
    assert isinstance(copy, StageDef)
    return StoreStage(**{f.name: getattr(copy, f.name) for f in fields(StageDef)}, egress=(egress,))


def _identifier(value: object, field: str, stage: str) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise _problem(
            f"{field} {value!r} is not a table name",
            "use lower-case letters, digits and _ (a schema may prefix it: 'rag.docs')",
            field,
            stage,
        )
    return value


def _tensor(names: list[str], given: str | None, what: str, field: str, stage: str) -> str:
    if given is None and len(names) == 1:
        return names[0]
    if given is not None and given in names:
        return given
    problem = (
        f"the embedding model has no {what} {given!r}"
        if given is not None
        else f"the embedding model has {len(names)} {what}s"
    )
    raise _problem(problem, f"name one with {field}= (one of: {', '.join(names)})", field, stage)


def retrieve(
    server: Any,
    model: Any,
    query: object,
    *,
    store: VectorDatabase,
    collection: str,
    top_k: int = 4,
    where: Mapping[str, str] | None = None,
    name: str = "retrieve",
    query_input: str | None = None,
    embedding_output: str | None = None,
    timeout: int | str = "10s",
) -> Retrieved:
    """The ``top_k`` documents of ``collection`` nearest to ``query`` (a ``str``, or what the
    embedding model's input takes), embedded by ``model`` on the Triton ``server``.

    Its value is typed :class:`~rtflow.stages.builtin.retrieval.Retrieved`: ``.texts``
    (``list[str]``, closest first), ``.documents`` (id, text, score, metadata each),
    ``.scores``, ``.ids``. ``where`` keeps documents whose metadata holds these values.
    ``query_input`` and ``embedding_output`` name the model's tensors when it has several.
    """
    secret, egress = _store_parts(store, VectorDatabase, VECTOR_DSN_ENV, name)
    if not isinstance(store.kind, str) or not _KIND.match(store.kind):
        raise _problem(
            f"store kind {store.kind!r} is not a store's name",
            "use 'pgvector' or a kind registered with register_vector_store",
            "store.kind",
            name,
        )
    if store.metric not in METRICS:
        raise _problem(
            f"metric {store.metric!r} is not one of {', '.join(METRICS)}",
            "use metric='cosine' for normalized text embeddings",
            "store.metric",
            name,
        )
    _identifier(collection, "collection", name)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
        raise _problem(
            f"top_k {top_k!r} is not a count of documents",
            f"give a whole number from 1 to {MAX_TOP_K}",
            "top_k",
            name,
        )
    filters = dict(where or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in filters.items()):
        raise _problem(
            f"where {filters!r} is not a mapping of str to str",
            "write where={'lang': 'en'}",
            "where",
            name,
        )
    if not hasattr(model, "inputs") or not hasattr(model, "outputs"):
        raise _problem(
            f"the embedding model is a {type(model).__name__}, not a model declaration",
            "pass the rtflow.gpu.triton_model(...) the server serves (its tensors are checked)",
            "model",
            name,
        )
    inputs = [t.name for t in getattr(model, "inputs", ())]
    outputs = [t.name for t in getattr(model, "outputs", ())]
    tensor_in = _tensor(inputs, query_input, "input", "query_input", name)
    tensor_out = _tensor(outputs, embedding_output, "output", "embedding_output", name)
    embedded = infer(server, model, {tensor_in: query}, name=f"{name}-embed", timeout=timeout)
    stage = _bind_store(retrieve_documents, name, secret, egress)
    return cast(
        Retrieved,
        stage(
            embedding=embedded.output(tensor_out),
            collection=collection,
            where=filters,
            top_k=top_k,
            metric=store.metric,
            store=store.kind,
        ),
    )


def _sessions(store: SessionDatabase, name: str) -> tuple[Secret, Egress]:
    parts = _store_parts(store, SessionDatabase, SESSION_DSN_ENV, name)
    _identifier(store.prefix, "store.prefix", name)
    bound = store.max_turns
    if isinstance(bound, bool) or not isinstance(bound, int) or bound < 2:
        raise _problem(
            f"max_turns {bound!r} cannot hold an exchange",
            "give a whole number of turns, at least 2 (a user turn and the answer)",
            "store.max_turns",
            name,
        )
    return parts


def history(store: SessionDatabase, session: object, *, name: str = "history") -> History:
    """The session's last ``store.max_turns`` turns, oldest first: ``.turns`` (role and text
    each) and ``.transcript`` (one ``role: text`` line a turn, for a prompt)."""
    secret, egress = _sessions(store, name)
    stage = _bind_store(session_history, name, secret, egress)
    return cast(History, stage(session=session, max_turns=store.max_turns, prefix=store.prefix))


def remember(
    store: SessionDatabase,
    session: object,
    *,
    user: object,
    assistant: object,
    request_id: object = "",
    name: str = "remember",
) -> int:
    """Append the exchange (``user``'s turn, then ``assistant``'s) to the session, dropping
    the oldest turns past ``store.max_turns``; its value is the number of turns held after.
    ``request_id`` (an event's id) makes a retried append land once."""
    secret, egress = _sessions(store, name)
    stage = _bind_store(session_append, name, secret, egress)
    return cast(
        int,
        stage(
            session=session,
            user=user,
            assistant=assistant,
            max_turns=store.max_turns,
            request_id=request_id,
            prefix=store.prefix,
        ),
    )
