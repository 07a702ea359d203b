"""``rtflow.drift``: watch a value of a stream pipeline for drift; ``rtflow.on_drift``: the
trigger of the pipeline that retrains when it drifts.

Inside a pipeline function with ``stream=rtflow.Stream(...)``::

    scored = rtflow.infer(server, "fraud-scorer", {"features": features})
    rtflow.drift(scored.output("risk"), name="risk-drift",
                 reference=rtflow.Reference(edges=[0.2, 0.5, 0.8],
                                            proportions=[0.55, 0.25, 0.15, 0.05]),
                 window=5000, threshold=0.2)

Each stream worker keeps a tumbling window of ``window`` values; when it is full it computes
the statistic (PSI, :mod:`rtflow.stages.builtin.drift`), sets the gauge
``rtflow_stream_drift{stage=<name>,statistic="psi"}`` and publishes a record to ``topic``
(``<pipeline>-drift``) inside the Kafka transaction of the batch that closed the window
(:mod:`rtflow.stages.stream.drift`). The retraining is an ordinary workflow-plane pipeline
triggered by ``rtflow.on_drift(topic, brokers=...)``: it starts on a crossing only.

**Why a recorded task, not an option of the pipeline.** ``rtflow.drift`` records a call of a
built-in stage (:func:`rtflow.stages.builtin.drift.drift_watch`), so the watched value is any
value a stage could read (a payload input, a stage output, one output tensor of an inference
call), resolved and type-checked by the same rules, a ``when`` around it restricts which events
are watched, and the hot-path split decides where it runs. The stream worker runs that task as
a window, never as a function call per event.

**Why the workflow plane refuses it.** There, each event is one Workflow with no memory of the
others: a window would need a store shared by every Workflow and a read-modify-write per event
(a pod, seconds), which is the stream plane's job done badly. Compile says so in one line; a
pipeline that only runs on the workflow plane can still hand its values to a stream pipeline
that watches them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any, cast

from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label
from rtflow.recording import Ref, TensorRef, _require_recorder
from rtflow.stage import configure
from rtflow.stages.builtin.drift import (
    STATISTICS,
    drift_watch,
    drift_watch_values,
    quantile_reference,
)
from rtflow.stream_layout import DRIFT_FUNCTIONS, drift_topic
from rtflow.trigger_ir import check_topic
from rtflow.triggers import Delivery, FilterExpr, Trigger, kafka, payload

if TYPE_CHECKING:
    from rtflow.pipeline import Pipeline

__all__ = ["Reference", "drift", "on_drift"]

MIN_PER_BIN = 10
"""A window holds at least this many values per bin: with fewer, PSI of an unshifted window
is mostly sampling noise (each bin's share moves by about 1/sqrt(count))."""

_SUM_TOLERANCE = 1e-6


def _problem(problem: str, fix: str, field: str, stage: str | None = None) -> DefinitionError:
    return DefinitionError(problem, fix=fix, field=field, stage=stage)


def _finite(values: object, field: str) -> list[float]:
    if not isinstance(values, list | tuple) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise _problem(f"{field} {values!r} is not a list of numbers", "give finite numbers", field)
    return [float(v) for v in values]


@dataclass(frozen=True)
class Reference:
    """What the watched value looks like when nothing has drifted: ``edges`` (k increasing cut
    points) and ``proportions`` (the k + 1 bins' shares, summing to 1). The outer bins are
    open: below the first edge, and from the last edge up. ``Reference.from_sample`` derives
    both from values seen in training."""

    edges: Sequence[float]
    proportions: Sequence[float]

    def __post_init__(self) -> None:
        edges = _finite(self.edges, "reference.edges")
        shares = _finite(self.proportions, "reference.proportions")
        if not edges:
            raise _problem(
                "reference.edges is empty: one bin cannot shift",
                "give at least one cut point, e.g. edges=[0.5], proportions=[0.9, 0.1]",
                "reference.edges",
            )
        if any(b <= a for a, b in pairwise(edges)):
            raise _problem(
                f"reference.edges {edges} are not strictly increasing",
                "sort them and drop repeated cut points",
                "reference.edges",
            )
        if len(shares) != len(edges) + 1:
            raise _problem(
                f"{len(edges)} edges make {len(edges) + 1} bins, but {len(shares)} proportions "
                "are given",
                "give one proportion per bin: below the first edge, between edges, above the last",
                "reference.proportions",
            )
        if any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > _SUM_TOLERANCE:
            raise _problem(
                f"reference.proportions sum to {sum(shares):g}, not 1 (or one is negative)",
                "give each bin's share of the reference sample (counts / total)",
                "reference.proportions",
            )
        object.__setattr__(self, "edges", tuple(edges))
        object.__setattr__(self, "proportions", tuple(shares))

    @property
    def bins(self) -> int:
        return len(self.proportions)

    @classmethod
    def from_sample(cls, sample: Sequence[float], *, bins: int = 10) -> Reference:
        """Quantile bins of ``sample`` (e.g. the training set's scores): ``bins`` bins of about
        equal share; fewer when ties make quantiles coincide, with the shares counted."""
        values = _finite(list(sample), "sample")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise _problem(f"bins={bins!r}", "give a whole number of bins, at least 2", "bins")
        if len(values) < bins * MIN_PER_BIN:
            raise _problem(
                f"a sample of {len(values)} values for {bins} bins",
                f"give at least {bins * MIN_PER_BIN} values ({MIN_PER_BIN} a bin), or fewer bins",
                "sample",
            )
        edges, shares = quantile_reference(values, bins)
        if not edges:
            raise _problem(
                "the sample holds one value only: it has no quantiles",
                "give a sample of the values as they vary",
                "sample",
            )
        return cls(edges=edges, proportions=shares)


def drift(
    value: Any,
    *,
    reference: Reference,
    name: str = "drift",
    statistic: str = "psi",
    window: int = 5000,
    threshold: float = 0.2,
    topic: str | None = None,
) -> None:
    """Watch ``value`` (a pipeline input, a stage output, or ``answer.output("risk")``: each
    element of a tensor's flat data is one value) on the stream plane.

    Every ``window`` values a stream worker computes ``statistic`` against ``reference`` and
    publishes ``{"drift", "pipeline", "statistic", "value", "threshold", "above", "crossed",
    "window_events", "missing", "window_end", "worker"}`` to ``topic`` (default
    ``<pipeline>-drift``);
    ``crossed`` is true only on the window that goes from at most ``threshold`` to above it.
    A value that is missing or not a finite number is not counted (the metric
    ``rtflow_stream_drift_values_total{outcome="missing"}`` says how many).
    """
    _require_recorder("drift()")
    stage_name = check_dns1123_label(name, field="drift.name", what="name")
    if not isinstance(value, Ref):
        raise _problem(
            f"the watched value is {value!r}, a constant",
            "watch a pipeline input, a stage's output or an inference's .output(...)",
            "value",
            stage_name,
        )
    if not isinstance(reference, Reference):
        raise _problem(
            f"reference is a {type(reference).__name__}, not rtflow.Reference",
            "pass rtflow.Reference(edges=[...], proportions=[...]) or "
            "rtflow.Reference.from_sample(training_scores)",
            "reference",
            stage_name,
        )
    if statistic not in STATISTICS:
        raise _problem(
            f"statistic {statistic!r} is not one of {', '.join(STATISTICS)}",
            "use statistic='psi' (population stability index)",
            "statistic",
            stage_name,
        )
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, int | float)
        or not math.isfinite(threshold)
        or threshold <= 0
    ):
        raise _problem(
            f"threshold {threshold!r} is not a positive number",
            "give a PSI above which the value has drifted, e.g. 0.2 (0.1-0.25 is moderate)",
            "threshold",
            stage_name,
        )
    least = reference.bins * MIN_PER_BIN
    if isinstance(window, bool) or not isinstance(window, int) or window < least:
        raise _problem(
            f"window={window!r} values for {reference.bins} bins",
            f"give a whole number of values, at least {least} ({MIN_PER_BIN} a bin): "
            "a smaller window's PSI is sampling noise",
            "window",
            stage_name,
        )
    if topic is not None:
        check_topic(topic, field="drift.topic")
    # The topic's default names the pipeline, which only the builder knows: "" here, read as
    # <pipeline>-drift wherever the topic is needed (drift_topic).
    watch = drift_watch_values if isinstance(value, TensorRef) else drift_watch
    bound = configure(cast(Any, watch), name=stage_name)
    bound(
        value=value,
        name=stage_name,
        statistic=statistic,
        edges=list(reference.edges),
        proportions=list(reference.proportions),
        window=window,
        threshold=float(threshold),
        topic=topic or "",
    )


def on_drift(
    source: str | Pipeline,
    *,
    brokers: Sequence[str] | str,
    drift_name: str | None = None,
    consumer_group: str | None = None,
    inputs: dict[str, Any] | None = None,
    start: str = "newest",
    delivery: Delivery | None = None,
    name: str | None = None,
) -> Trigger:
    """The Kafka trigger of a retraining pipeline: one run per crossing of a drift threshold.

    ``source`` is the drift topic, or the stream pipeline (its one drift topic). The filter is
    ``body.crossed == true`` (and ``body.drift == drift_name`` when given), compiled to Argo
    Events data filters: a window that stays above the threshold publishes ``crossed: false``
    and starts nothing. ``inputs`` maps record fields to the retraining's inputs (default:
    none); e.g. ``{"psi": "body.value", "drift": "body.drift"}``. ``start="newest"``: a
    new consumer group (the retraining deployed for the first time) starts from now, not with
    every crossing the topic still holds; ``"oldest"`` to take those too. The topic is read
    ``read_committed``: a crossing of an aborted batch starts nothing.
    """
    from rtflow.pipeline import Pipeline as PipelineType

    if isinstance(source, PipelineType):
        topics = _drift_topics(source)
        if len(topics) != 1:
            raise _problem(
                f"pipeline {source.name!r} publishes drift to {len(topics)} topics "
                f"({', '.join(topics) or 'none'})",
                "pass the topic itself: rtflow.on_drift('<topic>', brokers=...)",
                "source",
            )
        topic = topics[0]
    else:
        topic = source
    check_topic(topic, field="on_drift.source")
    condition: FilterExpr = payload("body.crossed") == True  # noqa: E712 (a filter, not a test)
    if drift_name is not None:
        condition = condition & (payload("body.drift") == drift_name)
    return kafka(
        topic,
        brokers=brokers,
        consumer_group=consumer_group,
        start=start,
        inputs=inputs or {},
        filter=condition,
        delivery=delivery,
        name=name,
        read_committed=True,
    )


def _drift_topics(pipeline: Pipeline) -> list[str]:
    built = pipeline.build()
    found = set()
    for task in built.tasks:
        if built.stage(task.stage).function in DRIFT_FUNCTIONS:
            topic = dict(task.arguments)["topic"]
            found.add(drift_topic(built.name, getattr(topic, "text", "")))
    return sorted(found)
