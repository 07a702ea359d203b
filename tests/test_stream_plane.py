"""The stream plane without a broker: which tasks are the hot path, the settings derived from the
budget and the models, the definition errors, and what a batch turns into (records, dead letters
with their reasons and source offsets, hand-offs, hops)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.loader import load_pipelines
from rtflow.stages.runtime import BadInput
from rtflow.stages.stream.plan import Message, Plan, groups_of

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fraud_detection.py"


def _trigger(**options: Any) -> Any:
    return rtflow.kafka(
        "orders",
        brokers=["kafka:9092"],
        consumer_group="shop",
        inputs={"order": "body"},
        filter=rtflow.payload("body.kind") == "sale",
        payload_schema={"kind": str, "total": float, "items": int},
        **options,
    )


@rtflow.stage(image="ghcr.io/acme/shop:1")
def price(order: dict[str, Any]) -> float:
    if order.get("flag") == "bad":
        raise BadInput("flagged")
    if order.get("flag") == "boom":
        raise ZeroDivisionError("boom")
    return float(order["total"]) * 1.2


@rtflow.stage(image="ghcr.io/acme/shop:1")
def label(order: dict[str, Any], gross: float) -> dict[str, Any]:
    return {"id": str(order.get("id")), "gross": round(gross, 2)}


review = rtflow.container("review", image="ghcr.io/acme/review:1", inputs={"gross": float})


def _shop(**stream: Any) -> rtflow.Pipeline:
    @rtflow.pipeline(name="shop", latency_budget_ms=40, triggers=[_trigger()],
                     stream=rtflow.Stream(**stream))  # fmt: skip
    def shop(order: dict[str, Any]) -> None:
        gross = price(order)
        record = label(order, gross)
        publish = rtflow.configure(rtflow.stages.builtin.kafka_publish.kafka_publish, name="pub")
        publish(topic="labels", payload=record, key_field="id")
        with rtflow.when(gross > 100):
            review(gross=gross)

    return shop


def _message(offset: int, body: Any, partition: int = 0) -> Message:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Message("orders", partition, offset, value, f"k{offset}".encode(), [], 0)


def test_the_fraud_example_splits_into_a_hot_path_and_a_workflow_plane_part() -> None:
    _, (definition,) = load_pipelines(str(EXAMPLE))
    pipeline = definition.build()
    stream = pipeline.stream
    assert stream is not None
    assert stream.hot_tasks == ("compute-features", "score", "decide", "publish-decision")
    assert set(stream.handoff_tasks) == {"review", "summarize", "analyst-approval", "block-card"}
    # From the 35 ms budget: a 100 ms interval could never fit it.
    assert (stream.transaction_interval_ms, stream.max_wait_ms) == (8, 4)
    (server,) = [s for s in pipeline.servers if s.name == "fraud-triton"]
    scorer = next(m for m in server.models if m.name == "fraud-scorer")
    assert dict(stream.inference_batch) == {"score": scorer.max_batch_size}
    assert stream.dead_letter_topic == "transactions-dead-letter"
    assert stream.handoff_topic == "fraud-detection-handoff"
    # The workers write hand-offs in their transactions: the workflow plane reads only the
    # committed ones (an aborted batch's hand-off, replayed, must start one workflow, not two).
    handoffs = [
        m.body
        for m in compile_pipelines([pipeline]).manifests
        if m.kind == "EventSource" and m.body["metadata"]["name"] == "fraud-detection-handoff"
    ]
    ((source,),) = [list(h["spec"]["kafka"].values()) for h in handoffs]
    assert source["topic"] == "fraud-detection-handoff"
    assert source["config"] == "consumer:\n  isolationLevel: 1\n"


@pytest.mark.parametrize(
    ("options", "field", "words"),
    [
        ({"guarantee": "maybe"}, "stream.guarantee", "not one of"),
        ({"hops": ["nope"]}, "stream.hops", "not a stage of the hot path"),
        ({"hops": ["price"]}, "stream.hops", "first stage"),
        ({"transaction_interval_ms": 30, "max_wait_ms": 10}, "stream.transaction_interval_ms",
         "latency budget"),
        ({"max_events": 0}, "stream.max_events", "positive"),
        ({"handoff_topic": "bad topic!"}, "stream.handoff_topic", ""),
    ],
)  # fmt: skip
def test_wrong_stream_options_fail_with_the_field_and_the_fix(
    options: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        _shop(**options).build()
    error = caught.value
    assert error.pipeline == "shop"
    assert error.field == field
    assert words in error.problem
    assert error.fix


def test_a_stream_pipeline_needs_a_kafka_trigger() -> None:
    @rtflow.pipeline(name="nokafka", stream=rtflow.Stream())
    def nokafka(order: dict[str, Any]) -> None:
        price(order)

    with pytest.raises(DefinitionError, match="one Kafka topic") as caught:
        nokafka.build()
    assert caught.value.field == "stream"


def test_a_publish_whose_topic_is_not_a_constant_is_refused() -> None:
    @rtflow.pipeline(name="dyn", triggers=[_trigger()], stream=rtflow.Stream())
    def dyn(order: dict[str, Any], where: str = "x") -> None:
        publish = rtflow.configure(rtflow.stages.builtin.kafka_publish.kafka_publish, name="pub")
        publish(topic=where, payload=order)

    with pytest.raises(DefinitionError, match="must be a constant") as caught:
        dyn.build()
    assert caught.value.stage == "pub"


def test_a_batch_becomes_records_dead_letters_and_hand_offs() -> None:
    pipeline = _shop().build()
    plan = Plan(pipeline)
    messages = [
        _message(10, {"kind": "sale", "total": 10.0, "items": 1, "id": 1}),
        _message(11, {"kind": "sale", "total": 500.0, "items": 2, "id": 2}),  # hand-off
        _message(12, {"kind": "refund", "total": 5.0, "id": 3}),  # filtered
        _message(13, b"{not json"),
        _message(14, {"kind": "sale", "total": "many", "id": 5}),  # payload schema
        _message(15, {"kind": "sale", "total": 1.0, "flag": "bad", "id": 6}),
        _message(16, {"kind": "sale", "total": 1.0, "flag": "boom", "id": 7}),
        _message(17, {"kind": "sale", "total": 3, "items": 1, "id": 8}),  # int feeds float
    ]
    result = plan.execute(messages)
    assert (result.processed, result.filtered, result.handed_off) == (3, 1, 1)
    assert result.dead_lettered == {"not_json": 1, "payload": 1, "bad_input": 1, "stage_failed": 1}
    labels = [r for r in result.records if r.topic == "labels"]
    assert [json.loads(r.value) for r in labels] == [
        {"gross": 12.0, "id": "1"},
        {"gross": 600.0, "id": "2"},
        {"gross": 3.6, "id": "8"},
    ]
    assert [r.key for r in labels] == [b"1", b"2", b"8"]
    (handoff,) = [r for r in result.records if r.topic == "shop-handoff"]
    handed = json.loads(handoff.value)
    assert handed["outputs"]["price"] == {"result": "600.0"}  # as an Argo parameter's text
    assert handed["source"] == {"topic": "orders", "partition": 0, "offset": 11}
    dead = {r.headers[1][1].decode(): r for r in result.records if r.topic == "orders-dead-letter"}
    assert sorted(dead) == ["bad_input", "not_json", "payload", "stage_failed"]
    headers = dict(dead["stage_failed"].headers)
    assert headers["rtflow-source-offset"] == b"16"
    assert headers["rtflow-stage"] == b"price"
    assert b"ZeroDivisionError: boom" in headers["rtflow-error"]
    assert dead["not_json"].value == b"{not json", "the original bytes"
    assert b"total is str" in dict(dead["payload"].headers)["rtflow-error"]


def test_a_hop_cuts_the_fused_group_behind_a_topic() -> None:
    pipeline = _shop(hops=["label"]).build()
    assert pipeline.stream is not None
    assert groups_of(pipeline.stream) == [("price",), ("label", "pub")]
    first, second = Plan(pipeline, group=0), Plan(pipeline, group=1)
    assert first.next_topic == second.input_topic == "shop-hop-label"
    out = first.execute([_message(1, {"kind": "sale", "total": 200.0, "id": 9})])
    (hop,) = out.records
    assert hop.topic == "shop-hop-label"
    message = Message(hop.topic, 0, 0, hop.value, hop.key, hop.headers, 0)
    result = second.execute([message])
    assert [json.loads(r.value) for r in result.records if r.topic == "labels"] == [
        {"gross": 240.0, "id": "9"}
    ]
    assert result.handed_off == 1


def test_run_local_help_names_the_stream_plane(capsys: pytest.CaptureFixture[str]) -> None:
    from rtflow.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "--plane" in out and "exactly once" in out


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))


def test_the_progress_line_says_when_latency_is_past_the_last_bucket() -> None:
    """A quantile in the histogram's +Inf bucket is 'more than the last bound', not 'inf'."""
    from rtflow.stages.stream.launcher import Totals

    seen = Totals(latency_buckets={0.005: 10.0, 0.01: 20.0, float("inf"): 100.0})
    assert seen.bound(seen.quantile(0.1) or 0.0) == "<=5 ms"
    assert seen.bound(seen.quantile(0.99) or 0.0) == ">10 ms"


def test_a_slow_commit_is_logged_with_its_phases_at_most_once_a_second(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rtflow.stages.stream import metrics as metrics_module

    now = [100.0]
    monkeypatch.setattr(metrics_module.time, "monotonic", lambda: now[0])
    metrics = metrics_module.StreamMetrics("fraud", "w-0")
    phases = {"offsets": 0.002, "flush": 0.48, "end": 0.001}
    with caplog.at_level("WARNING", logger="rtflow.stream"):
        metrics.observe_commit(0.004, {"offsets": 0.002, "flush": 0.001, "end": 0.001}, 0.1)
        metrics.observe_commit(0.483, phases, 0.1)
        now[0] += 0.5
        metrics.observe_commit(0.2, phases, 0.1)  # within the second: counted, not logged
        now[0] += 0.6
        metrics.observe_commit(0.3, phases, 0.1)
    slow = [r for r in caplog.records if r.getMessage() == "slow commit"]
    assert [(r.commit_ms, r.flush_ms, r.slow_commits_not_logged) for r in slow] == [
        (483.0, 480.0, 0),
        (300.0, 480.0, 1),
    ]
    # A slow turn of the loop is its own kind of line, not held back by the commit's.
    with caplog.at_level("WARNING", logger="rtflow.stream"):
        metrics.observe_iteration(0.5, {"consume": 0.001, "score": 0.49}, 0.1)
    (loop,) = [r for r in caplog.records if r.getMessage() == "slow iteration"]
    assert (loop.iteration_ms, loop.score_ms, loop.slow_iterations_not_logged) == (500.0, 490.0, 0)
    registry = metrics.registry
    assert registry.get_sample_value("rtflow_stream_commit_seconds_count") == 4
    for phase in phases:
        count = registry.get_sample_value(
            "rtflow_stream_commit_phase_seconds_count", {"phase": phase}
        )
        assert count == 4
