"""rtflow.drift: PSI against a hand computation, the window and its crossings, the
declaration's one-line errors, the stream worker's plan (records in the batch, state, missing
values; an inference output watched), and both pipelines compiled (strict schemas)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import strict_schema
from compiled import compile_docs
from local_pipelines import drift as pipelines

import rtflow
from rtflow import ir
from rtflow.errors import DefinitionError, RtflowError
from rtflow.stages.builtin.drift import EPSILON, bin_of, psi, quantile_reference
from rtflow.stages.stream.batch import EventState, Message
from rtflow.stages.stream.drift import DriftStep, DriftWindow, attach
from rtflow.stages.stream.metrics import StreamMetrics
from rtflow.stages.stream.plan import Plan
from rtflow.stages.stream.settings import WorkerSettings

# -- the statistic ---------------------------------------------------------------------------


def test_psi_is_the_hand_computed_sum() -> None:
    # shares 0.3 / 0.2 / 0.5 against 0.2 / 0.3 / 0.5
    hand = (0.3 - 0.2) * math.log(0.3 / 0.2) + (0.2 - 0.3) * math.log(0.2 / 0.3) + 0.0
    assert psi([30, 20, 50], [0.2, 0.3, 0.5]) == pytest.approx(hand, rel=1e-12)
    assert hand == pytest.approx(0.081093, abs=1e-6)


def test_an_empty_bin_counts_as_epsilon_not_infinity() -> None:
    hand = (EPSILON - 0.2) * math.log(EPSILON / 0.2) + 2 * (0.5 - 0.4) * math.log(0.5 / 0.4)
    assert psi([0, 50, 50], [0.2, 0.4, 0.4]) == pytest.approx(hand, rel=1e-12)
    assert psi([20, 40, 40], [0.2, 0.4, 0.4]) == 0.0


def test_bins_are_open_at_both_ends_and_an_edge_opens_its_bin() -> None:
    edges = [20.0, 40.0]
    assert [bin_of(edges, v) for v in (-1e9, 19.99, 20.0, 39.9, 40.0, 1e9)] == [0, 0, 1, 1, 2, 2]


def test_quantile_bins_count_their_shares_and_drop_repeated_edges() -> None:
    edges, shares = quantile_reference([i / 100 for i in range(100)], 4)
    assert edges == [0.25, 0.5, 0.75] and shares == [0.25, 0.25, 0.25, 0.25]
    edges, shares = quantile_reference([0.0] * 60 + [1.0, 2.0, 3.0, 4.0] * 10, 4)
    assert edges == [2.0] and shares == [0.7, 0.3]  # the 60 % of zeros hold two quantiles
    assert rtflow.Reference.from_sample([float(i) for i in range(40)], bins=4).edges == (
        10.0,
        20.0,
        30.0,
    )


# -- the window ------------------------------------------------------------------------------


def _fill(window: DriftWindow, values: list[float]) -> list[Any]:
    return [c for c in (window.add(v) for v in values) if c is not None]


def test_crossed_only_on_the_window_that_goes_above_the_threshold() -> None:
    window = DriftWindow([50.0], [0.5, 0.5], size=10, threshold=0.2)
    even, shifted = [10.0, 90.0] * 5, [90.0] * 10
    closed = _fill(window, even + shifted + shifted + even + shifted)
    assert [c.above for c in closed] == [False, True, True, False, True]
    assert [c.crossed for c in closed] == [False, True, False, False, True]
    assert closed[1].value == pytest.approx(psi([0, 10], [0.5, 0.5]))
    assert all(c.events == 10 for c in closed)


def test_the_state_round_trips_and_a_changed_reference_starts_over() -> None:
    window = DriftWindow([50.0], [0.5, 0.5], size=10, threshold=0.2)
    _fill(window, [90.0] * 10 + [10.0] * 3)
    again = DriftWindow([50.0], [0.5, 0.5], size=10, threshold=0.2)
    again.load(json.loads(json.dumps(window.state())))
    assert (again.counts, again.events, again.above) == ([3, 0], 3, True)
    other = DriftWindow([30.0, 60.0], [0.3, 0.3, 0.4], size=30, threshold=0.2)
    other.load(window.state())
    assert (other.counts, other.events, other.above) == ([0, 0, 0], 0, False)


# -- the declaration -------------------------------------------------------------------------


def _stream(body: Any, **stream: Any) -> rtflow.Pipeline:
    @rtflow.pipeline(
        name="watched",
        triggers=[rtflow.kafka("in", brokers="k:9092", inputs={"amount": "body.amount"})],
        stream=rtflow.Stream(image="ghcr.io/acme/x:1", **stream),
    )
    def watched(amount: float) -> None:
        pipelines.score(amount)
        body(amount)

    return watched


REF = rtflow.Reference(edges=[50], proportions=[0.5, 0.5])


@pytest.mark.parametrize(
    ("make", "field", "words"),
    [
        (lambda: rtflow.Reference(edges=[1, 1], proportions=[0.3, 0.3, 0.4]), "edges", "increas"),
        (lambda: rtflow.Reference(edges=[1], proportions=[0.3, 0.3]), "proportions", "sum to 0.6"),
        (lambda: rtflow.Reference(edges=[1], proportions=[1.0]), "proportions", "2 bins"),
        (lambda: rtflow.Reference(edges=[], proportions=[1.0]), "edges", "one bin"),
        (lambda: rtflow.Reference(edges=["a"], proportions=[0.5, 0.5]), "edges", "numbers"),
        (lambda: rtflow.Reference.from_sample([1.0] * 5, bins=2), "sample", "5 values"),
        (lambda: rtflow.Reference.from_sample([1.0] * 50, bins=2), "sample", "one value"),
    ],
)  # fmt: skip
def test_a_bad_reference_is_a_one_line_error(make: Any, field: str, words: str) -> None:
    with pytest.raises(DefinitionError) as error:
        make()
    assert error.value.field is not None and error.value.field.endswith(field)
    assert words in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"threshold": 0}, "threshold", "not a positive number"),
        ({"threshold": float("nan")}, "threshold", "not a positive number"),
        ({"window": 19}, "window", "at least 20"),
        ({"statistic": "ks"}, "statistic", "not one of psi"),
        ({"reference": [0.5, 0.5]}, "reference", "not rtflow.Reference"),
        ({"name": "Risk Drift"}, "drift.name", "Risk Drift"),
        ({"topic": "bad topic"}, "drift.topic", "bad topic"),
    ],
)
def test_a_bad_drift_is_a_one_line_error_naming_pipeline_stage_and_field(
    kwargs: dict[str, Any], field: str, words: str
) -> None:
    options = {"reference": REF, "name": "amount-drift", "window": 100, **kwargs}
    with pytest.raises(DefinitionError) as error:
        _stream(lambda amount: rtflow.drift(amount, **options)).build()
    assert error.value.field == field and error.value.pipeline == "watched"
    assert words in str(error.value) and "\n" not in str(error.value)


def test_a_constant_cannot_be_watched() -> None:
    with pytest.raises(DefinitionError, match="a constant") as error:
        _stream(lambda amount: rtflow.drift(0.5, reference=REF, window=100)).build()
    assert error.value.field == "value"


def test_drift_outside_a_pipeline_function_is_refused() -> None:
    with pytest.raises(RtflowError, match="inside a pipeline function"):
        rtflow.drift(1.0, reference=REF)


def test_the_workflow_plane_refuses_a_drift_in_one_line() -> None:
    trigger = rtflow.kafka("in", brokers="k:9092", inputs={"amount": "body.amount"})

    @rtflow.pipeline(name="no-stream", triggers=[trigger])
    def no_stream(amount: float) -> None:
        pipelines.score(amount)
        rtflow.drift(amount, name="amount-drift", reference=REF, window=100)

    with pytest.raises(DefinitionError) as error:
        no_stream.build()
    assert (error.value.stage, error.value.field) == ("amount-drift", "drift")
    assert "needs the stream plane" in str(error.value) and "\n" not in str(error.value)


def test_a_value_known_only_on_the_workflow_plane_cannot_be_watched() -> None:
    boxed = rtflow.container(
        "boxed", image="ghcr.io/acme/box:1", inputs={"amount": float}, outputs={"score": float}
    )

    def body(amount: Any) -> None:
        rtflow.drift(boxed(amount=amount).score, name="box-drift", reference=REF, window=100)

    with pytest.raises(DefinitionError) as error:
        _stream(body).build()
    assert (error.value.stage, error.value.field) == ("box-drift", "drift")
    assert "only known on the workflow plane" in str(error.value)


def test_a_tensor_output_is_watched_element_by_element() -> None:
    built = pipelines.scored_drift.build()
    assert built.stream is not None and "risk-drift" in built.stream.hot_tasks
    task = built.task("risk-drift")
    assert built.stage(task.stage).function == "rtflow.stages.builtin.drift:drift_watch_values"
    value = dict(task.arguments)["value"]
    assert isinstance(value, ir.TensorData) and value.tensor == "risk"


# -- the worker's plan -----------------------------------------------------------------------


def _plan(pipeline: rtflow.Pipeline, metrics: StreamMetrics | None = None) -> Plan:
    plan = Plan(pipeline.build())
    metrics = metrics or StreamMetrics("p", "w0")
    attach(plan, WorkerSettings(brokers="unused", worker_id="w0"), metrics, "g-w0")
    return plan


def _messages(values: list[Any], start: int = 0) -> list[Message]:
    return [
        Message("drift-readings", 1, start + i, json.dumps({"amount": v}).encode())
        for i, v in enumerate(values)
    ]


def test_a_shifted_batch_closes_a_window_with_a_crossing_inside_the_batch() -> None:
    plan = _plan(pipelines.drift_scoring)
    first = plan.execute(_messages([90.0] * 150))
    assert [r.topic for r in first.records if r.topic.startswith("drift-scoring-drift")] == [
        "drift-scoring-drift-state"
    ]
    second = plan.execute(_messages([90.0] * 60, start=150))
    drifts = [json.loads(r.value) for r in second.records if r.topic == "drift-scoring-drift"]
    assert len(drifts) == 1
    (record,) = drifts
    assert record["crossed"] is True and record["above"] is True
    assert record["value"] == pytest.approx(psi([0, 0, 0, 0, 200], [0.2] * 5), abs=1e-6)
    assert record["window_events"] == 200 and record["worker"] == "w0"
    assert record["window_end"] == {"topic": "drift-readings", "partition": 1, "offset": 199}
    assert record["drift"] == "amount-drift" and record["threshold"] == 0.2
    # the state record comes last: 10 events into the next window, above
    state = second.records[-1]
    assert (state.topic, state.key) == ("drift-scoring-drift-state", b"g-w0/amount-drift")
    assert json.loads(state.value) == {
        "counts": [0, 0, 0, 0, 10], "events": 10, "missing": 0, "above": True,
    }  # fmt: skip


def test_an_unshifted_stream_closes_windows_that_never_cross() -> None:
    plan = _plan(pipelines.drift_scoring)
    values = [float((i * 37) % 100) for i in range(1000)]
    result = plan.execute(_messages(values))
    drifts = [json.loads(r.value) for r in result.records if r.topic == "drift-scoring-drift"]
    assert len(drifts) == 5
    assert not any(d["crossed"] or d["above"] for d in drifts)
    assert all(d["value"] < 0.1 for d in drifts)


def test_values_that_are_not_numbers_are_not_counted_and_say_so() -> None:
    built = pipelines.scored_drift.build()
    plan = Plan(built)
    metrics = StreamMetrics("p", "w0")
    attach(plan, WorkerSettings(brokers="unused", worker_id="w0"), metrics, "g-w0")
    (step,) = [s for s in plan.steps if isinstance(s, DriftStep)]
    events = []
    for risk in ([0.9], [0.8, 0.95], ["x"], None, [float("nan")]):
        event = EventState(Message("scored-readings", 0, len(events), b"{}"))
        outputs = [] if risk is None else [{"name": "risk", "datatype": "FP32", "data": risk}]
        event.outputs["infer-drift-risk"] = {"response": {"outputs": outputs}}
        event.phases["infer-drift-risk"] = "Succeeded"
        events.append(event)
    records = step.observe(events)
    assert step.window.events == 3 and step.window.missing == 3
    assert [r.topic for r in records] == ["scored-drift-drift-state"]
    scraped = metrics.registry.get_sample_value
    labels = {"stage": "risk-drift"}
    assert scraped("rtflow_stream_drift_values_total", {**labels, "outcome": "counted"}) == 3
    assert scraped("rtflow_stream_drift_values_total", {**labels, "outcome": "missing"}) == 3


def test_the_gauge_holds_the_last_window() -> None:
    metrics = StreamMetrics("p", "w0")
    plan = _plan(pipelines.drift_scoring, metrics)
    plan.execute(_messages([90.0] * 200) + _messages([float(i % 100) for i in range(200)], 200))
    scraped = metrics.registry.get_sample_value
    gauge = scraped("rtflow_stream_drift", {"stage": "amount-drift", "statistic": "psi"})
    assert gauge == pytest.approx(psi([40, 40, 40, 40, 40], [0.2] * 5), abs=1e-9)
    windows = {
        c: scraped("rtflow_stream_drift_windows_total", {"stage": "amount-drift", "crossed": c})
        for c in ("true", "false")
    }
    assert windows == {"true": 1.0, "false": 1.0}


# -- compiled --------------------------------------------------------------------------------


def test_both_pipelines_compile_to_strictly_valid_objects_with_the_crossing_filter() -> None:
    docs = compile_docs(pipelines.drift_scoring, pipelines.drift_retrain)
    for doc in docs:
        assert strict_schema.errors_any(doc) == [], doc["kind"]
    topics = {
        d["spec"]["topicName"]: d["spec"]["config"] for d in docs if d["kind"] == "KafkaTopic"
    }
    assert topics["drift-scoring-drift"]["cleanup.policy"] == "delete"
    assert topics["drift-scoring-drift-state"]["cleanup.policy"] == "compact"
    (sensor,) = [d for d in docs if d["kind"] == "Sensor"]
    (dependency,) = sensor["spec"]["dependencies"]
    assert dependency["filters"]["data"] == [
        {"path": "body.crossed", "type": "bool", "comparator": "=", "value": ["true"]}
    ]
    (source,) = [d for d in docs if d["kind"] == "EventSource"]
    (kafka,) = source["spec"]["kafka"].values()
    assert kafka["topic"] == "drift-scoring-drift"
    # Sarama's ReadCommitted: a crossing in an aborted transaction starts nothing
    assert kafka["config"] == "consumer:\n  isolationLevel: 1\n"
    assert kafka["consumerGroup"]["oldest"] is False  # not every crossing of the retention
    (template,) = [d for d in docs if d["kind"] == "WorkflowTemplate"]
    assert template["metadata"]["name"] == "drift-retrain"
    (worker,) = [d for d in docs if d["kind"] == "Deployment"]
    assert worker["metadata"]["name"] == "drift-scoring-stream"
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    (alert,) = [
        r for r in rule["spec"]["groups"][0]["rules"] if "rtflow_stream_drift{" in r["expr"]
    ]
    assert alert["alert"] == "DriftScoringDriftAmountDrift"
    assert alert["expr"] == (
        'max(rtflow_stream_drift{rtflow_dev_pipeline="drift-scoring",namespace="drift",'
        'stage="amount-drift"}) > 0.2'
    )


def test_on_drift_takes_the_stream_pipeline_and_can_name_the_watch() -> None:
    trigger = rtflow.on_drift(pipelines.drift_scoring, brokers="k:9092", drift_name="amount-drift")
    assert trigger.source["topic"] == "drift-scoring-drift"
    assert trigger.source["start"] == "newest"
    with pytest.raises(DefinitionError, match="0 topics"):
        rtflow.on_drift(pipelines.drift_retrain, brokers="k:9092")


def test_a_workflow_plane_run_of_a_stream_pipeline_passes_over_the_watch(tmp_path: Any) -> None:
    """`rtflow run --local --plane workflow`: one event has no window; the watch does nothing
    and the rest of the pipeline runs."""
    import os
    import subprocess
    import sys

    from compiled import ROOT

    events = tmp_path / "events.jsonl"
    events.write_text('{"amount": 5}\n{"amount": 50}\n')
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         f"{ROOT / 'tests' / 'local_pipelines' / 'drift.py'}:drift_scoring", "--plane",
         "workflow", "--events", str(events), "-o", str(tmp_path / "out.jsonl")],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT / "tests")},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["status"] for r in results] == ["Succeeded", "Succeeded"]
