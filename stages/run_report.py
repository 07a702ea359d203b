"""What a local run reports: per-stage timings and the run's summary (text and JSON)."""

from __future__ import annotations

import statistics
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RunSummary", "StageTiming", "Timings", "percentile"]


@dataclass(frozen=True)
class StageTiming:
    stage: str
    count: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    overhead_p99_ms: float | None = None


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0 < q < 100) by :func:`statistics.quantiles` (inclusive method:
    interpolated between the samples, never beyond the smallest or largest); 0.0 for none."""
    if not values:
        return 0.0
    if len(values) == 1:
        return float(values[0])
    if q <= 0:
        return float(min(values))
    if q >= 100:
        return float(max(values))
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return cuts[min(len(cuts) - 1, max(0, round(q * 10) - 1))]


class Timings:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ms: dict[str, list[float]] = {}
        self.overhead: dict[str, list[float]] = {}

    def add(self, stage: str, ms: float, overhead: float | None = None) -> None:
        with self._lock:
            self.ms.setdefault(stage, []).append(ms)
            if overhead is not None:
                self.overhead.setdefault(stage, []).append(overhead)

    def table(self) -> list[StageTiming]:
        with self._lock:
            return [
                StageTiming(
                    stage,
                    len(values),
                    percentile(values, 50),
                    percentile(values, 99),
                    max(values),
                    percentile(self.overhead[stage], 99) if self.overhead.get(stage) else None,
                )
                for stage, values in sorted(self.ms.items())
            ]


@dataclass
class RunSummary:
    events: int = 0
    succeeded: int = 0
    failed: int = 0
    dead_lettered: int = 0
    filtered: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    stages: list[StageTiming] = field(default_factory=list)
    elapsed_s: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    ttft_p50_ms: float | None = None
    """Time to first token of the run's ``rtflow.generate`` steps (None: it has none)."""
    ttft_p99_ms: float | None = None
    generations: int = 0
    interrupted: bool = False
    abandoned: bool = False
    signal_exit: int | None = None
    log_dir: str | None = None
    triton: str | None = None

    @property
    def exit_code(self) -> int:
        """0 every event succeeded, 1 one failed; after SIGTERM 0 and after Ctrl-C 130 (the
        events in flight were finished and committed: see :mod:`rtflow.stages.shutdown`)."""
        if self.signal_exit is not None:
            return self.signal_exit
        return 1 if self.failed or self.interrupted else 0

    @property
    def events_per_second(self) -> float:
        return self.events / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def render(self) -> str:
        lines = [f"inference: {self.triton}"] if self.triton else []
        lines += [
            f"{self.events} events in {self.elapsed_s:.2f} s ({self.events_per_second:,.0f}/s): "
            f"{self.succeeded} succeeded, {self.failed} failed "
            f"({self.dead_lettered} to the dead-letter output)"
            + (f", {self.filtered} dropped by the trigger's filter" if self.filtered else "")
            + "; "
            f"latency p50 {self.latency_p50_ms:.2f} ms, p99 {self.latency_p99_ms:.2f} ms",
        ]
        if self.ttft_p50_ms is not None and self.ttft_p99_ms is not None:
            lines.append(
                f"time to first token ({self.generations} generations): "
                f"p50 {self.ttft_p50_ms:.2f} ms, p99 {self.ttft_p99_ms:.2f} ms"
            )
        if self.stages:
            width = max(len("stage"), *(len(s.stage) for s in self.stages))
            lines.append(
                f"{'stage':<{width}}  {'count':>7}  {'p50 ms':>8}  {'p99 ms':>8}  {'max ms':>8}"
                f"  {'overhead p99 ms':>15}"
            )
            for s in self.stages:
                overhead = f"{s.overhead_p99_ms:.3f}" if s.overhead_p99_ms is not None else "-"
                lines.append(
                    f"{s.stage:<{width}}  {s.count:>7}  {s.p50_ms:>8.2f}  {s.p99_ms:>8.2f}"
                    f"  {s.max_ms:>8.2f}  {overhead:>15}"
                )
        for event, reason in self.failures[:20]:
            lines.append(f"failed: {event}: {reason}")
        if len(self.failures) > 20:
            lines.append(f"... and {len(self.failures) - 20} more failed events")
        if self.abandoned:
            lines.append("stopped at once: the events in flight were dropped (a restart redoes)")
        elif self.interrupted:
            lines.append("stopped by a signal: the events in flight were finished and committed")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """The summary as ``rtflow run --local --format json`` prints it (one JSON object)."""
        data = asdict(self)
        data["exit_code"] = self.exit_code
        data["events_per_second"] = round(self.events_per_second, 3)
        data["elapsed_s"] = round(self.elapsed_s, 3)
        data["failures"] = [{"event": e, "reason": r} for e, r in self.failures]
        return data
