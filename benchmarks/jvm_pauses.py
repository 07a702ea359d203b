"""The broker's stop-the-world pauses during a measured window, from the JVM's safepoint log.

Every request the broker serves (a fetch, a produce, a transaction's commit) waits out a
pause: a 10 ms collection is a 10 ms step in the latency of every event in flight at that
moment, so a handful of them in a window are visible at p99. The safepoint log covers every
pause whatever the collector (G1's evacuations, ZGC's short mark/relocate pauses, code cache
and class unloading operations), each with its wall-clock time, so the pauses can be counted
inside the window each point measures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_LINE = re.compile(rb'^\[(\d+)ms\] Safepoint "([^"]+)".*Total: (\d+) ns')


def log_option(path: Path) -> str:
    """The JVM option that writes the safepoint log, each line stamped in epoch milliseconds."""
    return f"-Xlog:safepoint:file={path}:timemillis"


@dataclass(frozen=True)
class Pauses:
    count: int
    total_ms: float
    max_ms: float
    worst: str  # the operation of the longest pause
    over_5_ms: int

    def describe(self, seconds: float) -> str:
        return (
            f"broker pauses: {self.count} ({self.count / seconds:.1f}/s), "
            f"{self.total_ms:.1f} ms in all, {self.over_5_ms} over 5 ms, "
            f"longest {self.max_ms:.1f} ms ({self.worst})"
        )


def pauses(path: Path, start_ms: float, end_ms: float) -> Pauses:
    """The pauses that ended inside [start_ms, end_ms] (epoch milliseconds)."""
    durations: list[tuple[float, str]] = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError:
        lines = []
    for line in lines:
        match = _LINE.match(line)
        if match and start_ms <= int(match[1]) <= end_ms:
            durations.append((int(match[3]) / 1e6, match[2].decode()))
    if not durations:
        return Pauses(0, 0.0, 0.0, "-", 0)
    longest, worst = max(durations)
    return Pauses(
        count=len(durations),
        total_ms=sum(d for d, _ in durations),
        max_ms=longest,
        worst=worst,
        over_5_ms=sum(1 for d, _ in durations if d > 5.0),
    )
