"""Two batches in flight (``Stream(batches_in_flight=2)``), against the real Triton.

The worker starts the next batch (decode, filters, the stages before the first inference, the
request sent) while Triton answers the current one, then finishes the current one. What it
produces must be what running the batches one after the other produces, and a batch whose
dependency fails must leave nothing behind: the worker drops the started batches and consumes
them again. The worker's exactly-once tests run this path too (``RTFLOW_TEST_BATCHES=2``, see
test_stream_exactly_once.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from stream_harness import EVENTS, Plane, fraud_events, fraud_stream_triton

from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.stream.launcher import load_stream_pipeline, scrape
from rtflow.stages.stream.plan import DependencyError, Message, Plan, Record
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

PIPELINE = str(Path(__file__).resolve().parents[1] / "stream_pipelines" / "fraud_stream.py")


def _plan(triton: TritonServer) -> Plan:
    plan = Plan(load_stream_pipeline(PIPELINE))
    plan.bind_triton({"fraud-triton": f"127.0.0.1:{triton.grpc_port}"})
    return plan


def _messages(first_offset: int, count: int, seed: int) -> list[Message]:
    return [
        Message("transactions", offset % 4, offset, value, key.encode(), [], 1)
        for offset, (key, value) in enumerate(fraud_events(count, seed), start=first_offset)
    ]


def _comparable(records: Sequence[Record]) -> list[tuple[str, bytes | None, Any, list[Any]]]:
    """Records without their traceparent (a new span id per hop, by design)."""
    out = []
    for record in records:
        value: Any = record.value
        with contextlib.suppress(ValueError):
            value = json.loads(record.value)
        headers = [(k, v) for k, v in record.headers if k != "traceparent"]
        out.append((record.topic, record.key, value, headers))
    return out


def test_started_batches_give_what_batches_run_one_at_a_time_give(
    stream_triton: TritonServer,
) -> None:
    plan = _plan(stream_triton)
    try:
        first, second = _messages(0, 300, seed=3), _messages(300, 300, seed=4)
        one_at_a_time = [plan.execute(first), plan.execute(second)]
        # the second is started (its request sent) before the first is finished
        started = [plan.start(first), plan.start(second)]
        overlapped = [batch.finish() for batch in started]
        for alone, together in zip(one_at_a_time, overlapped, strict=True):
            assert _comparable(together.records) == _comparable(alone.records)
            assert (together.processed, together.dead_lettered, together.handed_off) == (
                alone.processed,
                alone.dead_lettered,
                alone.handed_off,
            )
        assert one_at_a_time[0].processed > 250, "the batch reached Triton and came back"
        assert "score" in overlapped[0].stage_seconds
    finally:
        plan.close()


def test_a_started_batch_whose_triton_is_gone_fails_as_a_dependency(
    tmp_path: Path,
) -> None:
    server = fraud_stream_triton(tmp_path / "triton").start()
    plan = _plan(server)
    try:
        plan.execute(_messages(0, 20, seed=5))  # connected and warm
        server.close()
        started = plan.start(_messages(20, 50, seed=6))
        with pytest.raises(DependencyError, match="Triton"):
            started.finish()
        # a batch dropped unfinished (the worker's rewind) leaves nothing to produce or wait for
        plan.start(_messages(70, 50, seed=7)).discard()
    finally:
        plan.close()
        server.close()


def _runs_two_batches(metrics_port: int) -> bool:
    info = [k for k in scrape(metrics_port) if k.startswith("rtflow_stream_worker{")]
    return len(info) == 1 and "batches_in_flight=2" in info[0]


@pytest.fixture
def overlapping_plane(
    kafka_broker: KafkaBroker, stream_triton: TritonServer, tmp_path: Path
) -> Iterator[Plane]:
    # read by the workers' pipeline module (tests/stream_pipelines/fraud_stream.py)
    made = Plane(kafka_broker, stream_triton, tmp_path, RTFLOW_TEST_BATCHES="2")
    try:
        yield made
    finally:
        made.workers.kill_all()


def test_kill_9_with_two_batches_in_flight_loses_and_doubles_nothing(
    overlapping_plane: Plane,
) -> None:
    plane = overlapping_plane
    expected = plane.feed(EVENTS)
    first = plane.workers.start(0)
    plane.workers.wait_until(lambda: plane.workers.processed() > EVENTS * 0.3, 240, "30 %")
    assert _runs_two_batches(first.metrics_port), "the worker read RTFLOW_TEST_BATCHES"
    first.kill()
    plane.workers.start(0)
    plane.check(expected)
    assert plane.workers.stop_all()[-1] == 0


def test_scaling_with_two_batches_in_flight_is_exactly_once(overlapping_plane: Plane) -> None:
    """A rebalance drops the started, unproduced batches; the partitions' new owner (or this
    worker, for the ones it keeps) consumes them again."""
    plane = overlapping_plane
    expected = plane.feed(EVENTS)
    plane.workers.start(0)
    plane.workers.wait_until(lambda: plane.workers.processed() > EVENTS * 0.2, 240, "20 %")
    second = plane.workers.start(1)
    plane.workers.wait_until(lambda: plane.workers.processed() > EVENTS * 0.6, 240, "60 %")
    second.terminate()  # and back
    assert second.wait(30.0) == 0, plane.workers.logs()
    plane.check(expected)
