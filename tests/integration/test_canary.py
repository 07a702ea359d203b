"""A canary rollout end to end, against the real Triton (explicit model control, the nvidia-pytriton
wheel's, on CPU) and the real broker, with no mocks.

The model ``canary-scorer`` (tests/local_pipelines/canary/) answers with its version; version 2
raises for every request, versions 1 (the declared stable one) and 3 are healthy. A stream
worker (the production loop, in this process) scores a steady flow of events while the canary
controller pipeline runs locally on one candidate event, with a 2 s window (through
``run_local`` for the broken candidate; through ``rtflow run --local`` consuming the trigger's
Kafka topic for the healthy one): the broken candidate is rolled back, the healthy one
promoted, and the events sent afterwards are answered by the version that won. The workflow
plane (the compiled http step and the gRPC client stage, run locally) is answered by the
declared stable version beside a candidate and after a promotion; and a Triton restarted with
the compiled repository after a promotion (the declared version alone) keeps the stream worker
answering through its fallback to the declared version.
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from components import component_missing, local_triton_for
from local_pipelines import canary_rollout as fixtures
from stream_harness import Feeder, produce, read_committed

import rtflow
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.canary import (
    canary_begin,
    canary_settle,
    finish_promotion,
    load_versions,
)
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.stages.rollout_state import RolloutState, read_topic, write_state
from rtflow.stages.stream.plan import Plan
from rtflow.stages.stream.settings import WorkerSettings
from rtflow.stages.stream.worker import StreamWorker
from rtflow.stream_layout import stream_topics

pytestmark = pytest.mark.integration

AFTER = 30
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_for(fixtures.canary_stream.build(), folder) as srv:
        yield srv


def ready(server: TritonServer, version: int) -> bool:
    url = f"{server.http_url}/v2/models/{fixtures.MODEL}/versions/{version}/ready"
    try:
        with _OPENER.open(url, timeout=10) as response:
            return int(response.status) == 200
    except OSError:
        return False


def workflow_plane_answer(server: TritonServer, tmp_path: Path, via: str = "http") -> int:
    """The model called on the workflow plane, run locally against this Triton (the compiled
    http step, or the gRPC client stage): the version that answered."""
    pipeline = fixtures.canary_workflow if via == "http" else fixtures.canary_workflow_grpc
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipeline.build(),
        ListSource([{"amount": 2.0}]),
        output=out,
        dead_letter=dead,
        triton=server,
        log_dir=tmp_path / f"logs-{via}-{secrets.token_hex(2)}",
    )
    assert summary.failed == 0, dead.records
    (record,) = out.records
    (answer,) = record["outputs"]["score"].values()
    (which,) = [o for o in answer["outputs"] if o["name"] == "which"]
    return int(which["data"][0])


def unversioned_answer(server: TritonServer) -> int:
    """What Triton answers a request that names no version: its highest version loaded."""
    body = {"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32",
                        "data": [2.0, 1.0]}]}  # fmt: skip
    request = urllib.request.Request(
        f"{server.http_url}/v2/models/{fixtures.MODEL}/infer",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with _OPENER.open(request, timeout=30) as response:
        answer = json.loads(response.read())
    (which,) = [o for o in answer["outputs"] if o["name"] == "which"]
    return int(which["data"][0])


@pytest.mark.parametrize("via", ["http", "grpc"])
def test_the_workflow_plane_is_answered_by_the_declared_version_beside_a_candidate(
    server: TritonServer, tmp_path: Path, via: str
) -> None:
    load_versions(server.http_url, fixtures.MODEL, [1, 3])  # a rollout of version 3 begun
    try:
        assert ready(server, 1) and ready(server, 3)
        assert unversioned_answer(server) == 3  # the hole: unversioned, the candidate answers
        assert workflow_plane_answer(server, tmp_path, via) == 1
    finally:
        load_versions(server.http_url, fixtures.MODEL, [1])


@dataclass
class Outcome:
    state: RolloutState
    summary: Any
    during: list[dict[str, Any]]  # the results of the events sent while the rollout ran
    after: list[dict[str, Any]]  # ... and of those sent once it had ended
    rows: dict[tuple[str, str], float]  # the worker's rows per (version, outcome)


def run_controller_cli(
    built: Any,
    env: dict[str, str],
    brokers: str,
    state_topic: str,
    tmp_path: Path,
    candidate: int,
) -> list[dict[str, Any]]:
    """The controller through ``rtflow run --local``, consuming its trigger's Kafka topic as the
    cluster's EventSource would: a module declaring it, the candidate event produced to the
    topic, ``--stage-env`` pointing its stages at this Triton."""
    (trigger,) = built.triggers
    module = tmp_path / "controller.py"
    module.write_text(
        f"import sys\nsys.path.insert(0, {str(Path(fixtures.__file__).parents[1])!r})\n"
        "import rtflow\nfrom local_pipelines import canary_rollout as f\n"
        f"model = f.scorer(topic={state_topic!r}, window='2s', min_requests=5)\n"
        f"controller = rtflow.canary_rollout(f.server(model), model, brokers=[{brokers!r}], "
        f"name={built.name!r}, candidates_topic={trigger.source.topic!r})\n"
    )
    produce(brokers, trigger.source.topic, [("v", json.dumps({"version": candidate}).encode())])
    flags = [f"--stage-env={s.name}:{k}={v}" for s in built.stages for k, v in env.items()]
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local", f"{module}:controller",
         "--kafka-topic", trigger.source.topic, "--kafka-brokers", brokers,
         "--max-events", "1", "--no-progress", "--log-dir", str(tmp_path / "logs"), *flags],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


def roll_out(
    server: TritonServer, broker: Any, tmp_path: Path, candidate: int, *, cli: bool = False
) -> Outcome:
    suffix = secrets.token_hex(3)
    state_topic, source, results = f"rollouts-{suffix}", f"pay-{suffix}", f"scored-{suffix}"
    model = fixtures.scorer(topic=state_topic, window="2s", min_requests=5)
    serving = fixtures.server(model)
    stream = fixtures.scored(serving, source=source, results=results).build()
    brokers = broker.bootstrap_servers
    controller = rtflow.canary_rollout(
        serving, model, brokers=[brokers], name=f"c-{suffix}", candidates_topic=f"cand-{suffix}"
    )
    broker.create_topics(*stream_topics(stream), f"cand-{suffix}")
    load_versions(server.http_url, fixtures.MODEL, [1])  # as the compiled policy loads it
    plan = Plan(stream)
    plan.bind_triton({serving.name: server.grpc_url})
    worker = StreamWorker(plan, WorkerSettings(brokers=brokers, worker_id=f"w-{suffix}"))
    running = threading.Thread(target=worker.run, daemon=True)
    running.start()
    feeder = Feeder(brokers, source)
    feeder.start()
    env = {"TRITON_HTTP_URL": server.http_url, "TRITON_METRICS_URL": server.metrics_url,
           "KAFKA_BROKERS": brokers, "TRITON_ADMIN_KEY": ""}  # fmt: skip
    built = controller.build()
    out, dead = MemorySink(), MemorySink()
    try:
        if cli:
            out.records = run_controller_cli(built, env, brokers, state_topic, tmp_path, candidate)
        else:
            summary = run_local(
                built,
                ListSource([{"version": candidate}]),
                output=out,
                dead_letter=dead,
                stage_env={s.name: env for s in built.stages},
                log_dir=tmp_path / "logs",
            )
            assert summary.failed == 0, dead.records
        feeder.halt.set()
        feeder.join()
        during = feeder.sent
        produce(brokers, source, [(f"after{i}", json.dumps({"amount": -1 - i}).encode())
                                  for i in range(AFTER)])  # fmt: skip
        read = read_committed(brokers, results, expected=during + AFTER, timeout=60, settle=0.5)
        found = [json.loads(r.value) for r in read]
    finally:
        feeder.halt.set()
        worker.stop()
        running.join(30)
    assert not running.is_alive(), "the worker did not stop"
    state = RolloutState.from_json(read_topic(brokers, state_topic)[fixtures.MODEL])
    rows = {
        (sample.labels["version"], sample.labels["outcome"]): sample.value
        for family in worker.metrics.registry.collect()
        if family.name == "rtflow_stream_inference_version_rows"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    return Outcome(
        state,
        out.records,
        [f for f in found if f["amount"] >= 0],
        [f for f in found if f["amount"] < 0],
        rows,
    )


def which(result: dict[str, Any]) -> int:
    return int(result["answer"]["outputs"][0]["data"][0])


def test_a_candidate_that_fails_is_rolled_back(
    server: TritonServer, kafka_broker: Any, tmp_path: Path
) -> None:
    outcome = roll_out(server, kafka_broker, tmp_path, candidate=2)
    state = outcome.state
    assert (state.phase, state.stable, state.candidate, state.share_percent) == (
        "rolled-back", 1, 2, 0
    ), state  # fmt: skip
    assert "error rate" in state.reason and "above 5.0%" in state.reason, state.reason
    assert not ready(server, 2) and ready(server, 1)  # Triton no longer serves version 2
    # no event was lost to the broken candidate: its failed rows were answered by version 1
    assert outcome.during and {which(r) for r in outcome.during} == {1}
    assert len(outcome.after) == AFTER and {which(r) for r in outcome.after} == {1}
    # the worker's metrics: the candidate's rows failed and were answered by the stable one
    failed = outcome.rows[("2", "error")]
    assert failed > 0 and outcome.rows[("2", "fallback")] == failed
    assert outcome.rows.get(("2", "ok"), 0) == 0 and outcome.rows[("1", "ok")] >= len(
        outcome.during
    )


def test_a_healthy_candidate_is_promoted(
    server: TritonServer, kafka_broker: Any, tmp_path: Path
) -> None:
    outcome = roll_out(server, kafka_broker, tmp_path, candidate=3, cli=True)
    state = outcome.state
    assert (state.phase, state.stable, state.share_percent) == ("promoted", 3, 0), state
    (result,) = outcome.summary  # rtflow run --local's line for the candidate event
    promoted = result["outputs"]["canary-promote"]
    assert promoted["stable"] == 3 and promoted["finish"] == state.finish, result
    assert state.finish == finish_promotion(fixtures.MODEL, 3, 1)
    assert state.finish.startswith("declare canary-scorer with versions=[3] (stable 3")
    # the declared version stays loaded beside the promoted one: the workflow plane answers
    assert ready(server, 3) and ready(server, 1)
    assert workflow_plane_answer(server, tmp_path) == 1
    assert {which(r) for r in outcome.during} == {1, 3}  # the canary's share, then all of it
    assert len(outcome.after) == AFTER and {which(r) for r in outcome.after} == {3}
    assert outcome.rows[("3", "ok")] > 0 and ("3", "error") not in outcome.rows


def test_a_rollout_that_ends_without_a_verdict_is_settled_by_a_roll_back(
    server: TritonServer, kafka_broker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exit handler's stage, after ``begin`` left a candidate on a share (the workflow was
    stopped): the candidate goes back to 0 and is unloaded; a second call does nothing."""
    brokers = kafka_broker.bootstrap_servers
    monkeypatch.setenv("KAFKA_BROKERS", brokers)
    monkeypatch.setenv("TRITON_HTTP_URL", server.http_url)
    topic = f"rollouts-{secrets.token_hex(3)}"
    policy = fixtures.scorer(topic=topic).canary.as_json()
    load_versions(server.http_url, fixtures.MODEL, [1])
    begun = canary_begin(model=fixtures.MODEL, version=3, declared_stable=1, policy=policy)
    assert tuple(begun) == (1, 3, 20) and ready(server, 3)
    reason = canary_settle(
        model=fixtures.MODEL, version=3, declared_stable=1, status="Failed", policy=policy
    )
    assert reason == "the rollout of version 3 ended without a verdict (workflow Failed)"
    state = RolloutState.from_json(read_topic(brokers, topic)[fixtures.MODEL])
    assert (state.phase, state.stable, state.share_percent, state.reason) == (
        "rolled-back", 1, 0, reason
    )  # fmt: skip
    assert ready(server, 1) and not ready(server, 3)
    again = canary_settle(
        model=fixtures.MODEL, version=3, declared_stable=1, status="Failed", policy=policy
    )
    assert again == "nothing to settle (rolled-back)"


def test_a_triton_restarted_after_a_promotion_is_answered_through_the_declared_version(
    kafka_broker: Any, tmp_path: Path
) -> None:
    """After version 3 was promoted (the state says stable 3) a Triton pod restarts and loads
    the compiled repository: version 1 alone. The stream worker, asking for 3, is told
    NOT_FOUND and answers every event with the declared version 1 instead of stalling."""
    suffix = secrets.token_hex(3)
    state_topic, source, results = f"rollouts-{suffix}", f"pay-{suffix}", f"scored-{suffix}"
    model = fixtures.scorer(topic=state_topic)
    serving = fixtures.server(model)
    stream = fixtures.scored(serving, source=source, results=results).build()
    brokers = kafka_broker.bootstrap_servers
    kafka_broker.create_topics(*stream_topics(stream))
    finish = finish_promotion(fixtures.MODEL, 3, 1)
    write_state(brokers, state_topic, RolloutState(
        fixtures.MODEL, 3, None, 0, "promoted", 2, "version 3 passed every step", time.time(),
        finish,
    ))  # fmt: skip
    with local_triton_for(fixtures.canary_stream.build(), tmp_path / "restarted") as restarted:
        assert ready(restarted, 1) and not ready(restarted, 3)
        plan = Plan(stream)
        plan.bind_triton({serving.name: restarted.grpc_url})
        worker = StreamWorker(plan, WorkerSettings(brokers=brokers, worker_id=f"w-{suffix}"))
        running = threading.Thread(target=worker.run, daemon=True)
        running.start()
        try:
            produce(brokers, source, [(f"k{i}", json.dumps({"amount": i}).encode())
                                      for i in range(AFTER)])  # fmt: skip
            read = read_committed(brokers, results, expected=AFTER, timeout=60, settle=0.5)
        finally:
            worker.stop()
            running.join(30)
    assert not running.is_alive(), "the worker did not stop"
    found = [json.loads(r.value) for r in read]
    assert len(found) == AFTER and {which(r) for r in found} == {1}
    unavailable = {
        sample.labels["version"]: sample.value
        for family in worker.metrics.registry.collect()
        if family.name == "rtflow_stream_inference_version_unavailable_rows"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert unavailable.get("3", 0) >= AFTER, unavailable


@pytest.mark.parametrize(
    "pipeline",
    [fixtures.controller, fixtures.canary_workflow, fixtures.canary_workflow_grpc],
    ids=["controller", "workflow-http", "workflow-grpc"],
)
def test_the_compiled_workflow_templates_pass_argo_lint(tmp_path: Path, pipeline: Any) -> None:
    from rtflow.generators.compiler import compile_pipelines
    from rtflow.generators.writers import write_folder
    from rtflow.verify.argo_linters import LinterUnavailable, find_argo_lint, run_argo_lint

    try:
        find_argo_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))
    write_folder(compile_pipelines([pipeline.build()]), tmp_path)
    (manifest,) = sorted(tmp_path.rglob("workflowtemplate-*.yaml"))
    result = run_argo_lint([manifest])
    assert result.ok, "\n".join(result.findings)
