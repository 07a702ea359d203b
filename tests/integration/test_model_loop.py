"""The model loop of docs/model-operations.md closed end to end: drift -> retrain -> canary ->
promoted, against the real broker and the real Triton (explicit model control, as
test_canary.py starts it), with no mocks or stand-ins.

One stream worker (the production loop, in this process) runs the hot path of
tests/local_pipelines/model_loop.py for the whole test: every event scored by ``loop-scorer``
(declared version 1, under ``rtflow.canary`` with steps (50, 100), a 2 s window and
``min_requests=5``) and its ``amount`` watched by ``rtflow.drift`` against the distribution
version 1 was trained on.

What it proves: on a shifted distribution the worker publishes exactly one crossing;
``rtflow run --local`` of the retraining pipeline, reading the drift topic through its
``rtflow.on_drift`` trigger, runs once, writes the next version (N + 1: 2 here) into the model
repository of the running Triton, which does not load it, and publishes ``{"model",
"version": N + 1}`` to the candidates topic; ``rtflow run --local`` of the
``rtflow.canary_rollout`` controller, reading that topic, loads N + 1 beside version 1, judges
it at 50 % and then 100 % of the worker's live traffic, and promotes it. The rollout state says
stable N + 1, the events during the rollout were answered by both versions, and every event fed
afterwards is answered by N + 1 (its ``which`` and its ``total``). The test starts each local
run, as Argo Events' Sensors would start the workflows, and feeds events; every hand-off
between the steps is a Kafka record the step before produced. The control: the same pipeline
on the reference distribution publishes its windows, none crosses, and the retraining's trigger
lets nothing through: no run, no version written, no candidate.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import triton_available
from local_pipelines import model_loop as loop
from stream_harness import Feeder, produce, read_committed

from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.canary import load_versions
from rtflow.stages.rollout_state import RolloutState, read_topic
from rtflow.stages.stream.plan import Plan
from rtflow.stages.stream.settings import WorkerSettings
from rtflow.stages.stream.worker import StreamWorker
from rtflow.stream_layout import drift_state_topic, stream_topics
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = ROOT / "tests" / "local_pipelines" / "model_loop.py"
WINDOWS = 2  # the first shifted window crosses, the second stays above: one crossing
AFTER = 30
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    """A Triton as ``rtflow run --local`` starts one for the stream pipeline (explicit model
    control, the declared version loaded), as test_canary.py starts it; the model's version
    folders resolve from model_loop.py's folder (the factories' models are not its globals)."""
    from rtflow.stages.inference import local_triton_server, needs_triton

    triton_available()
    built = loop.loop_scoring.build()
    base = Path(loop.__file__).parent
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_server(
        built, needs_triton(built), work_dir=folder, extra_bases=[base]
    ) as srv:
        yield srv


def ready(server: TritonServer, version: int) -> bool:
    url = f"{server.http_url}/v2/models/{loop.MODEL}/versions/{version}/ready"
    try:
        with _OPENER.open(url, timeout=10) as response:
            return int(response.status) == 200
    except OSError:
        return False


def versions_on_disk(server: TritonServer) -> list[int]:
    folder = server.model_repository / loop.MODEL
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


class Loop:
    """One test's run of the loop: its topics on the shared broker, and the stream worker."""

    def __init__(self, broker: KafkaBroker, server: TritonServer, tmp_path: Path) -> None:
        self.run = f"-{secrets.token_hex(3)}"
        self.brokers, self.server, self.tmp_path = broker.bootstrap_servers, server, tmp_path
        self.topics = loop.topics(self.run)
        self.stream = loop.scoring(self.run, self.brokers).build()
        state = drift_state_topic(self.stream.name)
        broker.create_topics(*(t for t in stream_topics(self.stream) if t != state),
                             self.topics["candidates"])  # fmt: skip
        broker.create_topics(state, config={"cleanup.policy": "compact"})
        load_versions(server.http_url, loop.MODEL, [1])  # as the compiled policy loads it
        plan = Plan(self.stream)
        plan.bind_triton({loop.server(loop.scorer(self.run)).name: server.grpc_url})
        self.worker = StreamWorker(
            plan, WorkerSettings(brokers=self.brokers, worker_id=f"w{self.run}")
        )
        self.running = threading.Thread(target=self.worker.run, daemon=True)
        self.env = {
            **os.environ,
            "RTFLOW_TEST_BROKERS": self.brokers,
            "RTFLOW_TEST_LOOP_RUN": self.run,
            "RTFLOW_TEST_LOOP_REPOSITORY": str(server.model_repository),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        }

    def __enter__(self) -> Loop:
        self.running.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.worker.stop()
        self.running.join(30)
        assert not self.running.is_alive(), "the worker did not stop"

    def feed(self, amounts: list[float], key: str) -> None:
        events = [(f"{key}{i}", json.dumps({"amount": a}).encode()) for i, a in enumerate(amounts)]
        produce(self.brokers, self.topics["source"], events)

    def read(self, topic: str, expected: int) -> list[dict[str, Any]]:
        found = read_committed(self.brokers, self.topics[topic], expected=expected, timeout=90,
                               settle=0.5, stop=lambda: not self.running.is_alive())  # fmt: skip
        return [json.loads(r.value) for r in found]

    def records_in(self, topic: str) -> int:
        """How many records ``topic`` (one partition) holds, committed or not."""
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({"bootstrap.servers": self.brokers, "group.id": "loop-watermarks"})
        try:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(self.topics[topic], 0), timeout=10
            )
        finally:
            consumer.close()
        return int(high - low)

    def cli(self, target: str, *args: str) -> list[dict[str, Any]]:
        """``rtflow run --local`` of a pipeline of model_loop.py on this run's topics: its
        result lines."""
        out = self.tmp_path / f"{target}.jsonl"
        done = subprocess.run(
            [sys.executable, "-m", "rtflow.cli", "run", "--local", f"{PIPELINES}:{target}",
             "--kafka-brokers", self.brokers, "--no-progress", "-o", str(out),
             "--log-dir", str(self.tmp_path / f"logs-{target}"), *args],
            capture_output=True, text=True, timeout=300, cwd=self.tmp_path, env=self.env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]

    def retrain(self) -> list[dict[str, Any]]:
        """The retraining, consuming the drift topic as its cluster EventSource would."""
        return self.cli("loop_retrain", "--plane", "workflow", "--kafka-topic",
                        self.topics["drift"], "--idle-timeout", "5")  # fmt: skip

    def roll_out(self) -> list[dict[str, Any]]:
        """The canary controller, consuming the candidates topic, its stages pointed at this
        Triton and broker."""
        built = loop.loop_canary.build()
        env = {"TRITON_HTTP_URL": self.server.http_url,
               "TRITON_METRICS_URL": self.server.metrics_url,
               "KAFKA_BROKERS": self.brokers, "TRITON_ADMIN_KEY": ""}  # fmt: skip
        flags = [f"--stage-env={s.name}:{k}={v}" for s in built.stages for k, v in env.items()]
        return self.cli("loop_canary", "--kafka-topic", self.topics["candidates"],
                        "--max-events", "1", *flags)  # fmt: skip


def which(result: dict[str, Any]) -> int:
    (answer,) = [o for o in result["answer"]["outputs"] if o["name"] == "which"]
    return int(answer["data"][0])


def total(result: dict[str, Any]) -> float:
    (answer,) = [o for o in result["answer"]["outputs"] if o["name"] == "total"]
    return float(answer["data"][0])


def test_a_shifted_distribution_retrains_and_the_canary_promotes_the_new_version(
    server: TritonServer, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    rng = random.Random(17)
    shifted = [round(rng.uniform(60.0, 100.0), 2) for _ in range(WINDOWS * loop.WINDOW)]
    before = versions_on_disk(server)
    with Loop(kafka_broker, server, tmp_path) as run:
        # drift: the shifted amounts, scored by the stable version, cross the threshold once
        run.feed(shifted, "shifted")
        scored = run.read("results", len(shifted))
        drift = run.read("drift", WINDOWS)
        assert len(scored) == len(shifted) and {which(r) for r in scored} == {1}
        assert [(d["crossed"], d["above"]) for d in drift] == [(True, True), (False, True)], drift
        assert drift[0]["value"] > drift[0]["threshold"] == 0.2, drift
        # retrain: started by the crossing alone, it writes the next version and offers it
        runs = run.retrain()
        assert [r["status"] for r in runs] == ["Succeeded"], runs
        version = before[-1] + 1
        assert versions_on_disk(server) == [*before, version]
        (candidate,) = run.read("candidates", 1)
        assert candidate == {"model": loop.MODEL, "version": version}
        assert not ready(server, version)  # nothing but the canary loads it
        # canary: the controller rolls the candidate out over the worker's live traffic
        feeder = Feeder(run.brokers, run.topics["source"])
        feeder.start()
        try:
            (rollout,) = run.roll_out()
        finally:
            feeder.halt.set()
            feeder.join()
        # after: every event is answered by the retrained version
        run.feed([-1.0 - i for i in range(AFTER)], "after")
        scored = run.read("results", len(shifted) + feeder.sent + AFTER)
    state = RolloutState.from_json(read_topic(run.brokers, run.topics["rollouts"])[loop.MODEL])
    assert (state.phase, state.stable, state.candidate, state.share_percent) == (
        "promoted", version, None, 0
    ), state  # fmt: skip
    assert rollout["status"] == "Succeeded", rollout
    assert rollout["outputs"]["canary-promote"]["stable"] == version, rollout
    assert ready(server, version) and ready(server, 1)  # the declared version stays loaded
    during = [r for r in scored[len(shifted) :] if r["amount"] >= 0]
    after = [r for r in scored if r["amount"] < 0]
    assert len(during) == feeder.sent and {which(r) for r in during} == {1, version}
    assert len(after) == AFTER and {which(r) for r in after} == {version}, after
    assert all(total(r) == pytest.approx((r["amount"] + 1.0) * version) for r in after)


def test_the_reference_distribution_starts_no_retraining(
    server: TritonServer, kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    rng = random.Random(5)
    unshifted = [round(rng.uniform(0.0, 100.0), 2) for _ in range(WINDOWS * loop.WINDOW)]
    before = versions_on_disk(server)
    with Loop(kafka_broker, server, tmp_path) as run:
        run.feed(unshifted, "reference")
        drift = run.read("drift", WINDOWS)
        assert len(drift) == WINDOWS and not any(d["crossed"] or d["above"] for d in drift), drift
        assert run.retrain() == []
        assert versions_on_disk(server) == before
        assert run.records_in("candidates") == 0
