"""Stand-ins for the fraud example's container stages, which need Docker to run as images.

Each records its call in memory (per worker process: stand-ins run in the executor's process)
so a test can check which events reached them.
"""

from __future__ import annotations

import threading

CALLS: dict[str, list[tuple[str, ...]]] = {"block": [], "notify": []}
_lock = threading.Lock()


def _record(kind: str, *values: str) -> None:
    with _lock:
        CALLS[kind].append(values)


def block_card(reason: str) -> None:
    _record("block", reason)


def notify_on_call(status: str, workflow: str) -> None:
    _record("notify", status, workflow)
