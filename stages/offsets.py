"""Which consumed offsets a local run may commit, and when a commit counts.

An event's offset is *open* from the moment the run reads it until its result (or its dead
letter) is written; the position to commit for a partition is its lowest open offset, or one
past the highest offset read when none is open. Everything below that position is done.

A position counts as committed only once the broker has confirmed the commit
(:meth:`OffsetBook.confirmed`). The first version marked a position committed when the commit
was *sent*: an asynchronous commit that failed (a rebalance in progress, a coordinator not yet
known) or never left (the process ended, or was killed, first) was never sent again, because
the book already said it was done. The committed offset then stayed behind what was processed
until some later event moved the position, and a kill redid everything since (46 of 200 events
in the issue), and a clean exit could leave its last events uncommitted. Now an unconfirmed
position stays due and goes out again on the next commit, so after a crash a restart redoes only
what was read and not yet committed.

That is bounded by a window (:meth:`OffsetBook.span`: offsets read beyond the last confirmed
commit, over every partition): the reader reads no further while the span is at the window, so
one slow event (a retry's backoff) cannot let thousands of finished events pile up uncommitted
behind it, all to be redone after a crash. A local run sets the window to twice its
``max_in_flight`` (the events running plus those queued), so a kill redoes at most that many.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

__all__ = ["OffsetBook"]


class OffsetBook:
    """Per partition: the offsets read and not yet done, the next offset after the highest read,
    and the last position the broker confirmed. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, set[int]] = {}
        self._next: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        self._floor: dict[int, int] = {}  # the confirmed position, or the first offset read
        self.changed = threading.Event()
        """Set whenever a position may have moved (an offset done); the committer clears it."""

    def read(self, partition: int, offset: int) -> None:
        with self._lock:
            self._open.setdefault(partition, set()).add(offset)
            self._floor.setdefault(partition, offset)
            if offset + 1 > self._next.get(partition, -1):
                self._next[partition] = offset + 1

    def done(self, partition: int, offset: int) -> None:
        with self._lock:
            still = self._open.get(partition)
            if still is None or offset not in still:
                return  # a partition given away meanwhile (rebalance), or done twice
            still.discard(offset)
        self.changed.set()

    def position(self, partition: int) -> int | None:
        """The offset a restart would resume from if this partition were committed now."""
        with self._lock:
            return self._position(partition)

    def _position(self, partition: int) -> int | None:
        still = self._open.get(partition)
        if still:
            return min(still)
        return self._next.get(partition)

    def due(self, partitions: Iterable[int] | None = None) -> dict[int, int]:
        """The positions to commit: those beyond what the broker has confirmed."""
        with self._lock:
            wanted = list(self._next) if partitions is None else list(partitions)
            due: dict[int, int] = {}
            for partition in wanted:
                position = self._position(partition)
                if position is not None and position > self._committed.get(partition, -1):
                    due[partition] = position
            return due

    def confirmed(self, positions: Mapping[int, int]) -> None:
        """The broker accepted these positions."""
        with self._lock:
            for partition, position in positions.items():
                if position > self._committed.get(partition, -1):
                    self._committed[partition] = position
                    self._floor[partition] = max(self._floor.get(partition, position), position)

    def committed(self, partition: int) -> int | None:
        with self._lock:
            return self._committed.get(partition)

    def span(self) -> int:
        """Offsets read beyond the confirmed commit, over every partition: what a crash now
        would have a restart read again."""
        with self._lock:
            return sum(n - self._floor.get(p, n) for p, n in self._next.items())

    def in_flight(self) -> int:
        """Offsets read and not done, over every partition."""
        with self._lock:
            return sum(len(s) for s in self._open.values())

    def forget(self, partitions: Iterable[int]) -> None:
        """Partitions given to another consumer: their open offsets are its business now."""
        with self._lock:
            for partition in partitions:
                self._open.pop(partition, None)
                self._next.pop(partition, None)
                self._committed.pop(partition, None)
                self._floor.pop(partition, None)
