"""A stream worker run in-process lets its Kafka clients go when it stops.

librdkafka destroys a client (its threads and broker connections) when the last Python
reference to it does. A worker run as a thread (``rtflow run --local``'s workers in tests, the
canary and drift tests) is still referenced after it stops, so whatever the worker keeps, it
keeps until the process ends: its two transactional producers did, and printed "Connection
refused" for the rest of the test session once the broker stopped. Counted here by librdkafka's
own threads (named ``rdk:...``), against the real broker.
"""

from __future__ import annotations

import gc
import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from stream_harness import produce, read_committed

import rtflow
from rtflow.stages.builtin.kafka_publish import kafka_publish
from rtflow.stages.stream.plan import Plan
from rtflow.stages.stream.settings import WorkerSettings
from rtflow.stages.stream.worker import StreamWorker
from rtflow.stream_layout import stream_topics

pytestmark = pytest.mark.integration

IMAGE = "ghcr.io/acme/close/stream:1.0@sha256:" + "ab" * 32


def librdkafka_threads() -> int:
    """This process's threads that librdkafka started (it names them rdk:main, rdk:broker...)."""
    count = 0
    for task in Path("/proc/self/task").iterdir():
        try:
            if (task / "comm").read_text().startswith("rdk:"):
                count += 1
        except OSError:
            continue  # a thread that ended while we looked
    return count


@rtflow.stage(image=IMAGE)
def double(amount: float) -> float:
    return amount * 2


def relay(source: str, results: str) -> Any:
    publish = rtflow.configure(kafka_publish, name="publish")

    @rtflow.pipeline(
        name=f"close-{source}",
        namespace="close",
        triggers=[rtflow.kafka(source, brokers="kafka:9092", inputs={"amount": "body.amount"})],
        stream=rtflow.Stream(image=IMAGE, partitions=1),
    )
    def pipeline(amount: float) -> None:
        publish(topic=results, payload={"doubled": double(amount)})

    return pipeline


def test_a_stopped_worker_keeps_no_kafka_client(kafka_broker: Any) -> None:
    suffix = secrets.token_hex(3)
    source, results = f"close-in-{suffix}", f"close-out-{suffix}"
    pipeline = relay(source, results).build()
    kafka_broker.create_topics(*stream_topics(pipeline))
    brokers = kafka_broker.bootstrap_servers
    gc.collect()
    before = librdkafka_threads()
    worker = StreamWorker(Plan(pipeline), WorkerSettings(brokers=brokers, worker_id=suffix))
    running = threading.Thread(target=worker.run, daemon=True)
    running.start()
    try:
        produce(brokers, source, [(f"k{i}", json.dumps({"amount": i}).encode()) for i in range(5)])
        read = read_committed(brokers, results, expected=5, timeout=60)
        assert sorted(json.loads(r.value)["doubled"] for r in read) == [0, 2, 4, 6, 8]
        assert librdkafka_threads() > before  # the worker's consumer and producers run
    finally:
        worker.stop()
        running.join(30)
    assert not running.is_alive()
    # The worker object is still held here, as a test or a thread pool holds it: its clients
    # must be gone anyway (destroyed as their references go; allow their threads to end).
    deadline = time.monotonic() + 10
    while librdkafka_threads() > before and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert librdkafka_threads() <= before, "the stopped worker still holds a Kafka client"
    assert worker is not None
