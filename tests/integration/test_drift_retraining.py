"""Drift-triggered retraining, run locally with the real broker: ``rtflow run --local`` of the
stream pipeline (tests/local_pipelines/drift.py: ``amount`` watched against a uniform
reference) on a shifted input distribution publishes a crossing record to the drift topic
(read ``read_committed``), and ``rtflow run --local`` of the retraining pipeline consuming that
topic runs the retraining (its stage writes a file) and publishes the candidate for the
canary; on an unshifted distribution the windows are published, none crosses, and the
retraining does not run."""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from stream_harness import read_committed

from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "tests" / "local_pipelines" / "drift.py"
EVENTS = 1000  # five windows of 200


def _topics(run: str) -> dict[str, str]:
    return {
        "readings": f"drift-readings{run}",
        "drift": f"drift-scoring-drift{run}",
        "candidates": f"fraud-scorer-candidates{run}",
    }


def _env(broker: KafkaBroker, run: str, retrain_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "RTFLOW_TEST_BROKERS": broker.bootstrap_servers,
        "RTFLOW_TEST_DRIFT_RUN": run,
        "RTFLOW_TEST_RETRAIN_DIR": str(retrain_dir),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
    }


def _read(broker: KafkaBroker, topic: str) -> list[dict[str, Any]]:
    """Every committed record of ``topic`` (read_committed, to the end)."""
    from confluent_kafka import Consumer, KafkaError

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"drift-test-reader-{secrets.token_hex(4)}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.subscribe([topic])
        ended: set[int] = set()
        found = []
        while len(ended) < len(partitions):
            message = consumer.poll(10)
            assert message is not None, f"{topic}: no end of partition within 10 s"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                ended.add(message.partition())
                continue
            found.append(json.loads(message.value()))
        return found
    finally:
        consumer.close()


def _ensure(broker: KafkaBroker, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    existing = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
    if topic not in existing.topics:
        broker.create_topics(topic, partitions=2, config={"cleanup.policy": "compact"})


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd, env=env,
    )  # fmt: skip


def _setup(broker: KafkaBroker, tmp_path: Path) -> tuple[dict[str, str], dict[str, str]]:
    """This test's topics (on the shared broker) and the environment its runs get."""
    run = f"-{secrets.token_hex(3)}"
    topics = _topics(run)
    broker.create_topics(
        topics["readings"], f"{topics['readings']}-dead-letter", topics["drift"],
        topics["candidates"], partitions=2,
    )  # fmt: skip
    _ensure(broker, "drift-scoring-drift-state")  # the pipeline's; keys per worker and run
    retrain_dir = tmp_path / "retrain"
    retrain_dir.mkdir()
    return topics, _env(broker, run, retrain_dir)


def _stream(broker: KafkaBroker, tmp_path: Path, env: dict[str, str], amounts: list[float]) -> None:
    """``rtflow run --local`` of the stream pipeline over these amounts."""
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"amount": a}) + "\n" for a in amounts))
    stream = _run(
        [f"{PIPELINES}:drift_scoring", "--events", str(events),
         "--kafka-brokers", broker.bootstrap_servers, "--log-dir", str(tmp_path / "logs")],
        env, tmp_path,
    )  # fmt: skip
    assert stream.returncode == 0, stream.stderr[-3000:]
    summary = json.loads([ln for ln in stream.stderr.splitlines() if ln.startswith("{")][-1])
    assert summary["processed"] == len(amounts), summary


def _aborted_crossing(broker: KafkaBroker, topic: str) -> None:
    """A crossing record in a transaction that aborts: what a worker that crashed after
    producing it leaves behind (its replay publishes the committed one)."""
    from confluent_kafka import Producer

    producer = Producer(
        {"bootstrap.servers": broker.bootstrap_servers, "transactional.id": f"{topic}-aborted"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    record = {"drift": "amount-drift", "crossed": True, "value": 9.9, "above": True}
    producer.produce(topic, json.dumps(record).encode(), b"amount-drift")
    producer.flush(30)
    producer.abort_transaction(30)


def _scenario(
    broker: KafkaBroker, tmp_path: Path, low: float, *, aborted: bool = False
) -> dict[str, Any]:
    """Feed EVENTS amounts uniform over [low, 100), run both pipelines; what each produced."""
    topics, env = _setup(broker, tmp_path)
    rng = random.Random(17)
    _stream(broker, tmp_path, env, [rng.uniform(low, 100.0) for _ in range(EVENTS)])
    drift = _read(broker, topics["drift"])
    if aborted:
        _aborted_crossing(broker, topics["drift"])
    retrain = _run(
        [f"{PIPELINES}:drift_retrain", "--plane", "workflow",
         "--kafka-topic", topics["drift"], "--kafka-brokers", broker.bootstrap_servers,
         "--idle-timeout", "5", "-o", str(tmp_path / "runs.jsonl")],
        env, tmp_path,
    )  # fmt: skip
    assert retrain.returncode == 0, retrain.stderr[-3000:]
    runs = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    return {
        "drift": drift,
        "runs": runs,
        "retrained": sorted(p.name for p in (tmp_path / "retrain").iterdir()),
        "candidates": _read(broker, topics["candidates"]),
    }


def test_a_shifted_distribution_starts_the_retraining_once(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    seen = _scenario(kafka_broker, tmp_path, low=60.0)
    drift = seen["drift"]
    assert len(drift) == EVENTS // 200, drift  # every window is published, once
    assert sum(d["window_events"] for d in drift) == EVENTS
    assert all(d["above"] and d["value"] > 0.2 for d in drift), drift
    crossings = [d for d in drift if d["crossed"]]
    assert len(crossings) == 1, drift  # the drift persists: one crossing, not one per window
    assert crossings[0]["drift"] == "amount-drift" and crossings[0]["worker"] == "local-0-0"
    assert len(seen["runs"]) == 1, seen["runs"]  # the filter let the crossing through only
    assert seen["runs"][0]["status"] == "Succeeded", seen["runs"][0]
    assert seen["retrained"] == ["retrain-2.json"]
    assert seen["candidates"] == [{"model": "fraud-scorer", "version": 2}]


def test_an_unshifted_distribution_starts_no_retraining(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """Nor does a crossing in an aborted transaction: the trigger reads read_committed (the
    EventSource by its Sarama config, the local run as librdkafka does by default)."""
    seen = _scenario(kafka_broker, tmp_path, low=0.0, aborted=True)
    drift = seen["drift"]
    assert len(drift) == EVENTS // 200, drift
    assert not any(d["crossed"] or d["above"] for d in drift), drift
    assert all(d["value"] < 0.1 for d in drift), drift  # "stable" by the common reading
    assert seen["runs"] == [] and seen["retrained"] == [] and seen["candidates"] == []


def test_a_restarted_worker_goes_on_with_its_committed_window(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """The window spans runs: 300 shifted values (a window and 100 more), the worker stops;
    the next worker with the same id reads its window back and 100 more values close it,
    above the threshold but no new crossing."""
    topics, env = _setup(kafka_broker, tmp_path)
    _stream(kafka_broker, tmp_path, env, [95.0] * 300)
    first = _read(kafka_broker, topics["drift"])
    assert [(d["crossed"], d["window_events"]) for d in first] == [(True, 200)]
    _stream(kafka_broker, tmp_path, env, [95.0] * 100)
    both = _read(kafka_broker, topics["drift"])
    assert [(d["crossed"], d["above"], d["window_events"]) for d in both] == [
        (True, True, 200),
        (False, True, 200),
    ]


def test_both_pipelines_compile_clean_under_the_real_linters_and_rtflow_lint(
    tmp_path: Path,
) -> None:
    """argo lint --offline (the retraining's WorkflowTemplate), argo-events lint (its
    EventSource and the Sensor whose data filter passes crossings only), and rtflow lint over
    the whole output (strict schemas, cross-resource checks, the CRDs of the topics)."""
    from components import component_missing
    from local_pipelines import drift as pipelines

    from rtflow.generators.compiler import compile_pipelines
    from rtflow.generators.writers import write_folder
    from rtflow.verify.argo_linters import (
        LinterUnavailable,
        find_argo_events_lint,
        find_argo_lint,
        run_argo_events_lint,
        run_argo_lint,
    )
    from rtflow.verify.lint import lint_paths

    try:
        find_argo_lint()
        find_argo_events_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))
    built = [pipelines.drift_scoring.build(), pipelines.drift_retrain.build()]
    write_folder(compile_pipelines(built), tmp_path)
    (template,) = tmp_path.rglob("workflowtemplate-*.yaml")
    result = run_argo_lint([template])
    assert result.ok, "\n".join(result.findings)
    events = sorted([*tmp_path.rglob("eventsource-*.yaml"), *tmp_path.rglob("sensor-*.yaml")])
    assert len(events) == 2
    result = run_argo_events_lint(events)
    assert result.ok, "\n".join(result.findings)
    report = lint_paths([tmp_path])
    assert report.ok, report.human()
    assert report.skipped == []


def test_kill_9_mid_window_neither_loses_nor_doubles_a_value_or_a_window(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    """A worker killed with open transactions (window state and records in them), restarted
    with the same id: the published windows hold every event exactly once (their sizes add up
    to the events fed, each window is published once) and the last committed state is empty."""
    from stream_harness import Workers, produce

    topics, env = _setup(kafka_broker, tmp_path)
    env = {**env, "RTFLOW_TEST_DRIFT_SLOW": "0.002", "PYTHONUNBUFFERED": "1"}
    count = 3000  # 15 windows of 200
    rng = random.Random(5)
    events = [(f"k{i}", json.dumps({"amount": rng.uniform(0, 100)}).encode()) for i in range(count)]
    produce(kafka_broker.bootstrap_servers, topics["readings"], events)
    workers = Workers(f"{PIPELINES}:drift_scoring", kafka_broker.bootstrap_servers, {},
                      tmp_path, env)  # fmt: skip
    try:
        first = workers.start(0)
        workers.wait_until(lambda: workers.processed() > count * 0.3, 120, "30 %")
        first.kill()  # SIGKILL: its open transaction is neither committed nor aborted
        workers.start(0)  # the same transactional id: init_transactions aborts the old one
        found = read_committed(
            kafka_broker.bootstrap_servers, topics["drift"], expected=count // 200,
            timeout=120, stop=workers.supervise,
        )  # fmt: skip
        assert workers.stop_all()[-1] == 0, workers.logs()
    finally:
        workers.kill_all()
    restored = [json.loads(line) for line in (tmp_path / "worker-0-0.log").read_text().splitlines()
                if '"drift window restored"' in line]  # fmt: skip
    assert restored[-1]["events"] > 0, "the kill left no partial window: the test shows nothing"
    windows = [json.loads(r.value) for r in found]
    ends = [(w["window_end"]["partition"], w["window_end"]["offset"]) for w in windows]
    assert len(ends) == len(set(ends)) == count // 200, windows
    assert sum(w["window_events"] for w in windows) == count
    assert all(w["worker"] == "w0-0" and not w["crossed"] for w in windows), windows


def test_an_inference_output_on_the_real_triton_is_what_the_window_counts(
    tmp_path: Path,
) -> None:
    """rtflow.drift(scored.output("risk")) in a worker's plan against the example's fraud
    scorer on a real Triton: the closed window's PSI and the next window's counts are those
    of the risks the model answered (read from the same batch's results)."""
    from components import local_triton_for
    from local_pipelines import drift_triton
    from stream_harness import fraud_events

    from rtflow.stages.builtin.drift import bin_of, psi
    from rtflow.stages.stream.batch import Message
    from rtflow.stages.stream.drift import attach
    from rtflow.stages.stream.metrics import StreamMetrics
    from rtflow.stages.stream.plan import Plan
    from rtflow.stages.stream.settings import WorkerSettings

    built = drift_triton.risk_drift.build()
    triton = local_triton_for(built, tmp_path / "triton").start()
    plan = Plan(built)
    try:
        plan.bind_triton({drift_triton.SERVER.name: f"127.0.0.1:{triton.grpc_port}"})
        attach(plan, WorkerSettings(brokers="unused", worker_id="w0"), StreamMetrics("p", "w0"),
               "g-w0")  # fmt: skip
        bodies = [v for _, v in fraud_events(400, seed=3)]
        messages = [Message("risk-transactions", 0, i, v) for i, v in enumerate(bodies)]
        result = plan.execute(messages)
    finally:
        plan.close()
        triton.stop()
    by_topic: dict[str, list[Any]] = {}
    for record in result.records:
        if not record.topic.endswith("dead-letter"):  # those hold the events' own bytes
            by_topic.setdefault(record.topic, []).append(json.loads(record.value))
    risks = [r["outputs"]["decide"]["risk"] for r in by_topic["risk-results"]]
    assert len(risks) == result.processed > 200, result
    counts = [0] * 4
    for risk in risks[:200]:
        counts[bin_of(drift_triton.EDGES, risk)] += 1
    (window,) = by_topic["risk-drift-drift"]
    assert window["value"] == pytest.approx(psi(counts, drift_triton.REFERENCE.proportions),
                                            abs=1e-5)  # fmt: skip
    assert window["window_events"] == 200 and window["missing"] == 0
    rest = [0] * 4
    for risk in risks[200:]:
        rest[bin_of(drift_triton.EDGES, risk)] += 1
    (state,) = by_topic["risk-drift-drift-state"]
    assert state["counts"] == rest and state["events"] == len(risks) - 200


@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_reading_the_state_back_waits_for_an_open_transaction_and_keeps_what_commits(
    kafka_broker: KafkaBroker, outcome: str
) -> None:
    """Another worker's transaction is open on the state topic when a worker reads its window
    back: the read waits for it to end, and takes its record only if it commits."""
    import threading

    from confluent_kafka import Producer

    from rtflow.stages.stream.drift import read_states

    topic = f"drift-state-{secrets.token_hex(3)}"
    kafka_broker.create_topics(topic, partitions=1)
    producers = []
    for index, key in enumerate((b"w0/risk", b"w1/risk")):
        producer = Producer(
            {"bootstrap.servers": kafka_broker.bootstrap_servers,
             "transactional.id": f"{topic}-{index}"}
        )  # fmt: skip
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(topic, json.dumps({"events": index + 1}).encode(), key)
        producer.flush(30)
        producers.append(producer)
    producers[0].commit_transaction(30)
    found: dict[bytes, Any] = {}
    reading = threading.Thread(
        target=lambda: found.update(
            read_states(kafka_broker.bootstrap_servers, {}, topic, [b"w0/risk", b"w1/risk"])
        )
    )
    reading.start()
    reading.join(1.0)
    assert reading.is_alive(), "read past a transaction that was still open"
    (producers[1].commit_transaction if outcome == "commit" else producers[1].abort_transaction)(30)
    reading.join(30)
    assert not reading.is_alive()
    expected = {b"w0/risk": {"events": 1}}
    if outcome == "commit":
        expected[b"w1/risk"] = {"events": 2}
    assert found == expected
