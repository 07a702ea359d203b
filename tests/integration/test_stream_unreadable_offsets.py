"""A worker whose group's committed offsets are held by an open transaction consumes nothing
(a read_committed consumer waits for stable offsets, KIP-447). It must not sit there silently:
it reports the partitions in ``rtflow_stream_unreadable_offset_partitions``, their lag, and a
log line saying what to do; once the transaction ends it goes on, exactly once. Against the
real broker: the open transaction is a real one, left open by a producer of the test."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from stream_harness import Plane

from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.stream.launcher import scrape
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration


def test_offsets_held_by_an_open_transaction_are_reported_then_processing_goes_on(
    kafka_broker: KafkaBroker, stream_triton: TritonServer, tmp_path: Path
) -> None:
    from confluent_kafka import Consumer, Producer, TopicPartition

    plane = Plane(kafka_broker, stream_triton, tmp_path)
    try:
        expected = plane.feed(2_000)
        group = plane.stream.consumer_group
        brokers = kafka_broker.bootstrap_servers
        member = Consumer({"bootstrap.servers": brokers, "group.id": group})
        holder = Producer(
            {"bootstrap.servers": brokers, "transactional.id": f"{group}-holder",
             "transaction.timeout.ms": 120_000}
        )  # fmt: skip
        holder.init_transactions(30)
        holder.begin_transaction()
        source = plane.stream.source_topic
        holder.send_offsets_to_transaction(
            [TopicPartition(source, p, 0) for p in range(4)], member.consumer_group_metadata(), 30
        )
        worker = plane.workers.start(0, extra=["--unreadable-offsets-after", "2"])

        def unreadable() -> float:
            try:
                values = scrape(worker.metrics_port)
            except OSError:
                return 0.0
            return values.get("rtflow_stream_unreadable_offset_partitions{}", 0.0)

        plane.workers.wait_until(lambda: unreadable() == 4, 120, "the unreadable offsets")
        assert plane.workers.processed() == 0
        lags = {k: v for k, v in scrape(worker.metrics_port).items() if "consumer_lag" in k}
        assert sum(lags.values()) >= len(expected), lags
        log = worker.log_path.read_text()
        line = next(ln for ln in log.splitlines() if "cannot read its committed offsets" in ln)
        entry = json.loads(line)  # the one log format of both planes (stage_logging)
        assert entry["level"] == "error" and entry["logger"] == "rtflow.stream"
        assert "find-hanging" in entry["event"], entry

        holder.abort_transaction(30)
        plane.check(expected)
        deadline = time.monotonic() + 30
        while unreadable() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert unreadable() == 0
        member.close()
    finally:
        plane.workers.kill_all()
