"""The latency budget is a check: each path's estimate from the cost model (rtflow.latency),
printed by ``rtflow graph``, and a compile error when the pipeline's plane cannot meet it.

The seed's workloads come out right: fraud scoring (35 ms) and personalization (80 ms) and the
conversational path (110 ms) only on the stream plane; a nightly batch refresh is fine on the
workflow plane."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from compiled import ROOT, whole_on_the_workflow_plane

from rtflow import latency
from rtflow.loader import load_pipelines

EXAMPLES = ROOT / "examples"

HEADER = f"""
import sys
from typing import Any
sys.path.insert(0, {str(EXAMPLES)!r})
from models.fraud_scorer import FRAUD_SCORER, SERVER
import rtflow
from rtflow.stages.builtin.kafka_publish import kafka_publish

@rtflow.stage(image="ghcr.io/acme/app:1")
def prepare(event: dict[str, Any]) -> list[float]:
    return [1.0, 0.0, 0.0, 1.0, 0.0]

@rtflow.stage(image="ghcr.io/acme/app:1")
def respond(scored: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    return {{"id": str(event.get("id")), "answer": scored["outputs"][0]["data"][0]}}

events = rtflow.kafka("requests", brokers=["kafka-0.kafka.svc:9092"], consumer_group="app",
                      inputs={{"event": "body"}})
"""

HOT_PATH = """
@rtflow.pipeline(name="{name}", triggers=[events], latency_budget_ms={budget}{stream})
def app(event: dict[str, Any]) -> None:
    features = prepare(event)
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {{"features": features}}, name="model")
    answer = respond(scored, event)
    publish = rtflow.configure(kafka_publish, name="reply")
    publish(topic="answers", payload=answer, key_field="id")
"""

NIGHTLY = """
@rtflow.stage(image="ghcr.io/acme/app:1")
def refresh(day: str) -> int:
    return 0

nightly_at_two = rtflow.calendar("0 2 * * *", inputs={{"day": rtflow.constant("today")}})

@rtflow.pipeline(name="nightly-refresh", latency_budget_ms=7_200_000, triggers=[nightly_at_two])
def nightly(day: str) -> None:
    refresh(day)
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "app_pipeline.py"
    path.write_text(HEADER + body, encoding="utf-8")
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("name", "budget"), [("fraud-scoring", 35), ("personalization", 80), ("conversation", 110)]
)
def test_a_fast_path_on_the_workflow_plane_fails_to_compile_with_the_way_out(
    tmp_path: Path, name: str, budget: int
) -> None:
    path = _write(tmp_path, HOT_PATH.format(name=name, budget=budget, stream=""))
    done = _cli("compile", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert f"pipeline {name!r}" in line and "latency_budget_ms" in line
    assert "workflow plane" in line and "stream=rtflow.Stream" in line
    assert not (tmp_path / "out").exists()  # nothing written


@pytest.mark.parametrize(
    ("name", "budget"), [("fraud-scoring", 35), ("personalization", 80), ("conversation", 110)]
)
def test_the_same_path_on_the_stream_plane_compiles_and_graph_shows_its_estimate(
    tmp_path: Path, name: str, budget: int
) -> None:
    stream = ", stream=rtflow.Stream()"
    path = _write(tmp_path, HOT_PATH.format(name=name, budget=budget, stream=stream))
    done = _cli("compile", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    graph = _cli("graph", str(path))
    (line,) = [x for x in graph.stdout.splitlines() if x.startswith("%% latency:")]
    assert "prepare -> model -> respond -> reply: stream plane" in line
    assert f"(within {budget} ms)" in line


def test_a_nightly_batch_refresh_is_fine_on_the_workflow_plane(tmp_path: Path) -> None:
    path = _write(tmp_path, NIGHTLY.format())
    done = _cli("compile", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    graph = _cli("graph", str(path))
    one_pod = (latency.SENSOR_MS + latency.WORKFLOW_START_MS + latency.POD_RUN_MS) / 1000
    expected = f"%% latency: refresh: workflow plane, ~{one_pod:.1f} s (within 7200000 ms)"
    assert expected in graph.stdout


def test_a_stream_path_over_its_budget_names_the_stream_settings(tmp_path: Path) -> None:
    stream = ", stream=rtflow.Stream(transaction_interval_ms=20, max_wait_ms=10)"
    path = _write(tmp_path, HOT_PATH.format(name="slow", budget=35, stream=stream))
    done = _cli("compile", str(path), "-o", str(tmp_path / "out"))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "stream plane" in line and "transaction_interval_ms" in line


def test_the_fraud_examples_estimates_add_up_from_the_cost_model() -> None:
    _, (definition,) = load_pipelines(str(EXAMPLES / "fraud_detection.py"))
    pipeline = definition.build()
    found = {e.tasks[-1]: e for e in latency.estimates(pipeline)}
    hot = found["publish-decision"]
    assert hot.plane == "stream" and hot.human is None
    stream = pipeline.stream
    assert stream is not None
    expected = (
        latency.KAFKA_HOP_MS + stream.max_wait_ms + latency.WORKER_BATCH_MS
        + 3 * latency.FUNCTION_STAGE_MS + latency.TRITON_REQUEST_MS + 0.5  # the model's queue
        + stream.transaction_interval_ms + latency.COMMIT_MS
    )  # fmt: skip
    assert hot.ms == pytest.approx(expected)
    assert hot.ms <= 35 < hot.ms + latency.WORKFLOW_START_MS
    # The review branch waits for the analyst: no estimate, no failure.
    assert found["block-card"].human == "analyst-approval"
    assert list(latency.over_budget(pipeline)) == []


def test_the_workflow_plane_costs_a_controller_pass_per_step_it_waits_for() -> None:
    """The fraud example without ``stream=``, as Argo's real controller ran it (BENCHMARKS.md,
    "Control plane"): its first pod 1.5 s after the Workflow's creation, each step the next
    waits for seen done at the controller's next pass (10 s), the http step three passes, the
    publish done when its pod ends: 55-56 s measured from the Workflow's creation to the end of
    publish-decision's pod, against 54.5 s estimated (plus the Sensor)."""
    _, (definition,) = load_pipelines(str(EXAMPLES / "fraud_detection.py"))
    pipeline = whole_on_the_workflow_plane(definition)
    chain = [pipeline.task(n) for n in ("compute-features", "score", "decide", "publish-decision")]
    estimate = latency.estimate_path(pipeline, chain)
    assert [t.ms for t in estimate.terms] == [
        latency.SENSOR_MS,
        latency.WORKFLOW_START_MS,
        latency.REQUEUE_MS,  # compute-features, seen at the next pass
        latency.HTTP_PASSES * latency.REQUEUE_MS,  # score: the agent, the TaskSet, the DAG
        latency.REQUEUE_MS,  # decide
        latency.POD_RUN_MS,  # publish-decision: done when its pod ends
    ]
    assert estimate.ms - latency.SENSOR_MS == pytest.approx(54_500)


def test_a_hand_off_without_a_person_is_costed_across_both_planes() -> None:
    _, (definition,) = load_pipelines(str(EXAMPLES / "fraud_detection.py"))
    pipeline = definition.build()
    chain = [pipeline.task(n) for n in ("compute-features", "score", "decide", "review")]
    estimate = latency.estimate_path(pipeline, chain)
    assert estimate.planes == ("stream", "stream", "stream", "workflow")
    whats = [t.what for t in estimate.terms]
    assert "hand-off: Kafka" in whats and "Workflow start" in whats
    assert estimate.ms > latency.WORKFLOW_START_MS + latency.POD_RUN_MS
    # Asynchronous by design: estimated, not held to the budget.
    assert estimate.handed_off
    assert "handed off to the workflow plane" in estimate.line(35)


def test_a_hand_off_without_a_person_does_not_fail_the_hot_paths_budget(tmp_path: Path) -> None:
    body = (
        HOT_PATH.format(name="shop", budget=35, stream=", stream=rtflow.Stream()")
        + """
check = rtflow.container("check", image="ghcr.io/acme/check:1", inputs={"answer": dict})

@rtflow.pipeline(name="shop-review", triggers=[events], latency_budget_ms=35,
                 stream=rtflow.Stream())
def reviewed(event: dict[str, Any]) -> None:
    features = prepare(event)
    scored = rtflow.infer(SERVER, FRAUD_SCORER, {"features": features}, name="model")
    answer = respond(scored, event)
    check(answer=answer)
"""
    )
    path = _write(tmp_path, body)
    done = _cli("compile", f"{path}:reviewed", "-o", str(tmp_path / "out"))
    assert done.returncode == 0, done.stderr
    graph = _cli("graph", f"{path}:reviewed")
    assert "check: handed off to the workflow plane" in graph.stdout
