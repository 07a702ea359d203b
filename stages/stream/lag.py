"""How far behind a worker is, per assigned partition, and whether its group can read its
committed offsets at all.

Lag is the high watermark minus the worker's position. A partition has no position until its
first record is consumed, and a consumer cannot start one while its group's committed offsets
are unreadable: a ``read_committed`` consumer asks for stable offsets (KIP-447), and the broker
refuses while a transaction that committed offsets to the group is still open. That is normal
for up to the transaction timeout after a worker died (the coordinator then aborts the
transaction); past it, the transaction is hanging (issue #10's note: a broker restart can leave
one), and the worker would sit assigned, consuming nothing, with no lag reported, so no lag
alert could fire. Here such partitions are checked: their committed offsets are read (one
round trip, only for partitions without a position, at most once per ``unreadable_after``);
an idle partition answers at once and its lag is known; one that does not answer is counted in
``rtflow_stream_unreadable_offset_partitions``, its lag is reported as everything it holds, and
the log says what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from rtflow.stages.stream.metrics import StreamMetrics

log = logging.getLogger("rtflow.stream")

Key = tuple[str, int]


class LagWatch:
    """Observed from the worker's loop, once a second at most."""

    def __init__(
        self,
        metrics: StreamMetrics,
        group: str,
        unreadable_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.group = group
        self.unreadable_after = unreadable_after
        self._clock = clock
        self._last = 0.0
        self._last_check = 0.0
        self._without_position: dict[Key, float] = {}  # since when

    def observe(self, consumer: Any) -> None:
        now = self._clock()
        if now - self._last < 1.0:
            return
        self._last = now
        lags: dict[int, int] = {}
        overdue = []
        assigned = consumer.assignment()
        for tp in assigned:
            key = (tp.topic, tp.partition)
            (position,) = consumer.position([tp])
            if position.offset >= 0:
                self._without_position.pop(key, None)
                _low, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    lags[tp.partition] = max(0, high - position.offset)
            elif now - self._without_position.setdefault(key, now) >= self.unreadable_after:
                overdue.append(tp)
        for key in set(self._without_position) - {(tp.topic, tp.partition) for tp in assigned}:
            del self._without_position[key]
        unreadable: int | None = 0 if not overdue else None  # None: unchanged
        if overdue and now - self._last_check >= self.unreadable_after:
            self._last_check = now
            held, unreadable = self._check(consumer, overdue)
            lags.update(held)
        # The lag first: whoever sees the unreadable partitions counted sees what they hold.
        self.metrics.observe_lag(lags)
        if unreadable is not None:
            self.metrics.unreadable_offsets.set(unreadable)

    def _check(self, consumer: Any, partitions: list[Any]) -> tuple[dict[int, int], int]:
        """The lag of partitions without a position, and how many of them are unreadable."""
        from confluent_kafka import KafkaException

        try:
            committed = consumer.committed(partitions, timeout=2.0)
        except KafkaException as exc:
            names = ", ".join(f"{tp.topic}/{tp.partition}" for tp in partitions)
            log.error(
                "group %s cannot read its committed offsets of %s after %g s without a "
                "position (%s): a transaction that committed offsets to them is still open. "
                "Past its timeout the broker aborts it; if it stays open it is hanging: find "
                "it with `kafka-transactions.sh --bootstrap-server BROKERS find-hanging "
                "--broker-id N` and abort it with `kafka-transactions.sh ... abort`",
                self.group, names, self.unreadable_after, exc.args[0].str(),
            )  # fmt: skip
            held = {tp.partition: self._held(consumer, tp, None) for tp in partitions}
            return held, len(partitions)
        return {tp.partition: self._held(consumer, tp, tp.offset) for tp in committed}, 0

    @staticmethod
    def _held(consumer: Any, tp: Any, committed: int | None) -> int:
        """Records after the committed offset; all the partition holds when that is unknown."""
        low, high = consumer.get_watermark_offsets(tp, cached=False, timeout=2.0)
        start = committed if committed is not None and committed >= 0 else low
        return max(0, int(high) - int(start))
