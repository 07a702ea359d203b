"""The drift statistic's arithmetic and the built-in stages ``rtflow.drift`` records.

Kept free of Kafka and Prometheus so that the SDK (``rtflow.Reference.from_sample``, the
build-time checks) and the stream worker (:mod:`rtflow.stages.stream.drift`) share one
definition of a bin and of PSI.

**Bins.** A reference is ``edges`` (k increasing cut points) and ``proportions`` (k + 1 shares,
summing to 1). Bin 0 is ``x < edges[0]``, bin i is ``edges[i-1] <= x < edges[i]``, the last
bin ``x >= edges[-1]``: the outer bins are open, so every number falls in a bin and a value far
outside the reference's range counts as drift instead of being dropped.

**PSI** (population stability index) of a window against the reference: the sum over bins of
``(a - e) * ln(a / e)``, with ``a`` the window's share and ``e`` the reference's share of the
bin; an empty bin counts as ``EPSILON`` (else one empty bin makes the sum infinite). The common
reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a significant one.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any

from rtflow.stage import stage
from rtflow.stages.builtin import image
from rtflow.stream_layout import DRIFT_FUNCTIONS  # noqa: F401 (the stages below, by name)

EPSILON = 1e-4
"""The share an empty bin counts as in PSI (window or reference)."""

STATISTICS = ("psi",)


def bin_of(edges: Sequence[float], value: float) -> int:
    """The bin of ``value``: ``bisect_right`` over the cut points (an edge opens its bin)."""
    return bisect_right(edges, value)


def psi(counts: Sequence[int], expected: Sequence[float], epsilon: float = EPSILON) -> float:
    """PSI of a window's ``counts`` per bin against the reference's ``expected`` shares."""
    total = sum(counts)
    if total <= 0:
        raise ValueError("PSI of an empty window")
    value = 0.0
    for count, share in zip(counts, expected, strict=True):
        actual = max(count / total, epsilon)
        reference = max(share, epsilon)
        value += (actual - reference) * math.log(actual / reference)
    return value


def quantile_reference(sample: Sequence[float], bins: int) -> tuple[list[float], list[float]]:
    """Edges at the sample's quantiles (``bins`` bins), and each bin's share of the sample.

    The shares are counted, not assumed equal: with ties (a score that is often exactly 0)
    two quantiles coincide, the repeated edge is dropped and its bin's share is what the
    sample really holds."""
    ordered = sorted(float(v) for v in sample)
    n = len(ordered)
    cuts: list[float] = []
    for i in range(1, bins):
        # the lower value at each quantile position (no interpolation: the edge is a value seen)
        edge = ordered[min(n - 1, (i * n) // bins)]
        if edge > ordered[0] and (not cuts or edge > cuts[-1]):
            cuts.append(edge)
    counts = [0] * (len(cuts) + 1)
    for value in ordered:
        counts[bin_of(cuts, value)] += 1
    return cuts, [c / n for c in counts]


def as_number(value: Any) -> float | None:
    """A watched value as a float, or None when it is not a finite number (a bool, a string,
    ``None``, NaN are not counted)."""
    if value is True or value is False or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


# The built-in stages. The stream worker never calls them: a task whose stage function is one
# of DRIFT_FUNCTIONS is a DriftStep (rtflow.stages.stream.drift), which reads ``value`` for its
# window. They exist so that the watch is an ordinary task of the recorded graph: its value is
# resolved and type-checked like any stage argument, a `when` around it restricts the events
# it watches, and the hot-path split places it. Compile refuses them on the workflow plane;
# `rtflow run --local --plane workflow` of a stream pipeline calls them, and they do nothing
# (one event has no window), so the rest of the pipeline runs as it would.


@stage(name="drift-watch", image=image("stream-worker"))
def drift_watch(
    value: float,
    name: str,
    statistic: str,
    edges: list[float],
    proportions: list[float],
    window: int,
    threshold: float,
    topic: str,
) -> None:
    """One number per event, watched by the stream worker (see the module's docstring)."""
    return  # called only by a workflow-plane run of a stream pipeline: no window there


@stage(name="drift-watch-values", image=image("stream-worker"))
def drift_watch_values(
    value: list[float],
    name: str,
    statistic: str,
    edges: list[float],
    proportions: list[float],
    window: int,
    threshold: float,
    topic: str,
) -> None:
    """A list per event (an inference output's flat data): each element is one value."""
    return  # as drift_watch
