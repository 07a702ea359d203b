"""``rtflow run --local`` against a real Kafka broker: nothing is lost on the way through."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from local_pipelines import relay, shop

from rtflow.stages.events import Event, ListSource, MemorySink
from rtflow.stages.kafka_io import KafkaSink, KafkaSource
from rtflow.stages.local import auto_approve, run_local
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration


def topic(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def produce(broker: KafkaBroker, name: str, values: list[bytes]) -> None:
    sink = KafkaSink(name, broker.bootstrap_servers, key=None)
    producer = sink._producer
    for value in values:
        producer.produce(name, value=value)
    assert producer.flush(30) == 0


def consume(broker: KafkaBroker, name: str, count: int, timeout: float = 30) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"check-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([name])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                found.append((json.loads(msg.value()), msg.key(), dict(msg.headers() or [])))
        # nothing beyond what was expected
        extra = consumer.poll(1.0)
        if extra is not None and extra.error() is None:
            found.append((json.loads(extra.value()), extra.key(), dict(extra.headers() or [])))
    finally:
        consumer.close()
    return found


def test_events_in_from_a_topic_and_results_out_nothing_lost(
    kafka_broker: KafkaBroker, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RTFLOW_TEST_STATE", str(tmp_path))
    source, results, dead = topic("orders"), topic("results"), topic("dead")
    kafka_broker.create_topics(source, results, dead, partitions=2)
    bodies: list[bytes] = []
    for i in range(120):
        if i % 10 == 3:
            bodies.append(b"not json")
        elif i % 10 == 7:
            bodies.append(json.dumps({"order": {"no_amount": i}}).encode())
        else:
            bodies.append(json.dumps({"order": {"amount": i * 10, "items": ["a"]}}).encode())
    produce(kafka_broker, source, bodies)
    brokers = kafka_broker.bootstrap_servers
    events = KafkaSource(source, brokers, group="local-run", max_events=len(bodies))
    out, dead_sink = KafkaSink(results, brokers), KafkaSink(dead, brokers)
    summary = run_local(
        shop.shop.build(),
        events,
        output=out,
        dead_letter=dead_sink,
        approver=auto_approve,
        max_in_flight=8,
        log_dir=tmp_path / "logs",
    )
    out.close()
    dead_sink.close()
    assert summary.events == 120 and summary.succeeded == 96 and summary.failed == 24
    ok = {r["event"] for r, _, _ in consume(kafka_broker, results, 96)}
    failed = {r["event"]: r["reason"] for r, _, _ in consume(kafka_broker, dead, 24)}
    assert len(ok) == 96 and len(failed) == 24 and not ok & set(failed)
    offsets = {f"{source}/{p}/{o}" for p in (0, 1) for o in range(120)}
    assert len(ok | set(failed)) == 120 and (ok | set(failed)) <= offsets  # each event once
    assert any("not JSON" in r for r in failed.values())
    assert any("no amount" in r for r in failed.values())
    # offsets committed: a second run of the same group reads nothing
    again = KafkaSource(source, brokers, group="local-run", idle_timeout=2.0)
    summary2 = run_local(
        shop.shop.build(),
        again,
        output=MemorySink(),
        dead_letter=MemorySink(),
        approver=auto_approve,
    )
    assert summary2.events == 0


class _Paced:
    """Events at a steady pace, so the run outlasts a broker restart."""

    def __init__(self, bodies: list[Any], every: float) -> None:
        self.bodies, self.every = bodies, every
        self.total = len(bodies)

    def __iter__(self) -> Iterator[Event]:
        for event in ListSource(self.bodies, prefix="relay"):
            time.sleep(self.every)
            yield event


def test_the_kafka_publish_stage_loses_nothing_over_a_broker_restart(
    kafka_broker: KafkaBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    out = topic("relayed")
    kafka_broker.create_topics(out)
    monkeypatch.setenv("KAFKA_BROKERS", kafka_broker.bootstrap_servers)
    n = 300
    bodies = [{"order": {"id": f"o{i}", "n": i}, "topic": out} for i in range(n)]

    restarted: list[float] = []

    def restart() -> None:
        time.sleep(1.0)
        kafka_broker.restart()
        restarted.append(time.monotonic())

    restarter = threading.Thread(target=restart)
    restarter.start()
    results, dead = MemorySink(), MemorySink()
    try:
        summary = run_local(
            relay.relay.build(),
            _Paced(bodies, 0.01),
            output=results,
            dead_letter=dead,
            max_in_flight=8,
            workers=2,
            log_dir=tmp_path,
        )
        finished = time.monotonic()
    finally:
        restarter.join()
    assert restarted and restarted[0] < finished, "the broker restarted after the run"
    assert summary.failed == 0, dead.records[:3]
    published = consume(kafka_broker, out, n, timeout=60)
    ids = [value["id"] for value, _, _ in published]
    assert sorted(set(ids)) == sorted(f"o{i}" for i in range(n))  # every event arrived
    value, key, headers = published[0]
    assert key == value["id"].encode()
    assert headers["traceparent"].startswith(b"00-")
