"""What the stream benchmark reads besides latency: CPU per process tree from /proc, and a
worker's own metrics (where its loop time goes, its waits' quantile buckets, its cache)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

CLOCK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def cpu_seconds(pids: Sequence[int]) -> float:
    """utime + stime of the processes and all their descendants (Triton's stub is a child)."""
    tree = _children()
    total = 0.0
    stack = list(pids)
    while stack:
        pid = stack.pop()
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK
        stack.extend(tree.get(pid, []))
    return total


def worker_profile(ports: Sequence[int]) -> dict[str, float]:
    """Where a worker's loop time goes, from its own metrics: mean events per batch, mean ms
    per batch for each stage and for the commit (summed over workers' counts)."""
    from rtflow.stages.stream.launcher import scrape

    sums: dict[str, float] = {}
    outcomes: dict[str, float] = {}  # a worker-side answer cache's rows (client_cache)
    for port in ports:
        try:
            values = scrape(port)
        except OSError:
            continue
        for key, value in values.items():
            if key.endswith("_sum{}") or "_sum{" in key or "_count{" in key or "_bucket{" in key:
                sums[key] = sums.get(key, 0.0) + value
            elif key.startswith("rtflow_stream_inference_cache_total{"):
                outcome = "hit" if "outcome=hit" in key else "miss"
                outcomes[outcome] = outcomes.get(outcome, 0.0) + value
    profile: dict[str, float] = {}
    for key, total in sums.items():
        if "_sum{" not in key:
            continue
        count = sums.get(key.replace("_sum{", "_count{"), 0.0)
        if not count:
            continue
        name = key.split("_sum{")[0].removeprefix("rtflow_stream_")
        label = key.split("{", 1)[1].rstrip("}")
        scale = 1.0 if "events" in name or "rows" in name else 1000.0
        profile[f"{name}{'[' + label + ']' if label else ''}"] = total / count * scale
    if sum(outcomes.values()):  # the share of rows the cache answered
        profile["cache_hit_share"] = outcomes.get("hit", 0.0) / sum(outcomes.values())
    # The bucket a quantile falls in (an upper bound, in ms), for the two waits a latency is
    # made of on the worker's side: send -> processed, and the commit that makes it visible.
    for name in ("event_latency_seconds", "commit_seconds"):
        buckets: dict[float, float] = {}
        for key, value in sums.items():
            if key.startswith(f"rtflow_stream_{name}_bucket{{le="):
                bound = float(key.split("le=", 1)[1].rstrip("}"))
                buckets[bound] = buckets.get(bound, 0.0) + value
        if not buckets or not buckets.get(float("inf")):
            continue
        total = buckets[float("inf")]
        for q in (0.5, 0.99):
            bound = min(b for b, c in buckets.items() if c >= q * total)
            profile[f"{name.removesuffix('_seconds')}_p{int(q * 100)}_at_most"] = bound * 1000.0
    return profile


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
