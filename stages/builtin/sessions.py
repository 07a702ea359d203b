"""The conversation built-ins: a session's history read before generation, the exchange
appended after, bounded (the oldest turns dropped past ``max_turns``).

Ordinary ``@rtflow.stage`` functions, so the workflow plane (a pod each) and the stream plane
(calls inside the fused worker) run the same code. The store is PostgreSQL
(:class:`~rtflow.stages.builtin.pgvector_store.PgSessionStore`; why not Redis: see that module),
its connection string from the Secret mounted as a file
(:func:`~rtflow.stages.builtin.stores.dsn_from_env`, ``RTFLOW_SESSION_STORE_DSN``).

Appends to one session are serialized by the store (none lost when two events of one session
run at once); ``request_id`` (an event's id) makes an append idempotent, so a stream batch
retried after a failed commit appends its exchanges once.
"""

from __future__ import annotations

import threading
from typing import Any, NamedTuple

from rtflow.options import Backoff, Retry
from rtflow.stage import stage
from rtflow.stages.builtin import image
from rtflow.stages.builtin.pgvector_store import SESSIONS_TABLE, PgSessionStore
from rtflow.stages.builtin.stores import SESSION_DSN_ENV, Turn, dsn_from_env
from rtflow.stages.runtime import BadInput

_stores: dict[tuple[str, str], PgSessionStore] = {}
_lock = threading.Lock()

RETRY = Retry(limit=5, policy="Always", backoff=Backoff("1s", 2, "1m"))


def session_store(prefix: str) -> PgSessionStore:
    dsn = dsn_from_env(SESSION_DSN_ENV)
    with _lock:
        if (dsn, prefix) not in _stores:
            _stores[dsn, prefix] = PgSessionStore(dsn, prefix)
        return _stores[dsn, prefix]


def _bound(max_turns: int) -> int:
    if max_turns < 1:
        raise BadInput(f"max_turns is {max_turns}: keep at least one turn")
    return max_turns


class History(NamedTuple):
    """A session's last turns, oldest first."""

    turns: list[dict[str, Any]]  # {"role", "text"}
    transcript: str  # "user: ...\nassistant: ...", one line a turn, for a prompt


@stage(name="session-history", image=image("retrieval"), retry=RETRY, timeout="1m")
def session_history(session: str, max_turns: int = 20, prefix: str = SESSIONS_TABLE) -> History:
    """The last ``max_turns`` turns of ``session`` (none for a new session)."""
    turns = session_store(prefix).read(session, _bound(max_turns))
    return History(
        turns=[t.as_dict() for t in turns],
        transcript="\n".join(f"{t.role}: {t.text}" for t in turns),
    )


@stage(name="session-append", image=image("retrieval"), retry=RETRY, timeout="1m")
def session_append(
    session: str,
    user: str,
    assistant: str,
    max_turns: int = 20,
    request_id: str = "",
    prefix: str = SESSIONS_TABLE,
) -> int:
    """Append the exchange (the user's turn, then the assistant's) to ``session``; the number
    of turns it holds afterwards (at most ``max_turns``)."""
    turns = [Turn("user", user), Turn("assistant", assistant)]
    return session_store(prefix).append(
        session, turns, max_turns=_bound(max_turns), request_id=request_id
    )
