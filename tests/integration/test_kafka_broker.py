"""The local Kafka broker keeps the promises the stream plane is built on.

Per-key order, transactions that hide aborted writes from read_committed consumers, and no loss
over a restart are broker behaviour: these tests run them against the real Kafka 4 jars, so a
broken broker set-up (a replication factor the single node cannot meet, a missing log binding,
a wrong format step) shows up here rather than as a flaky pipeline test later.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from components import component_missing, in_ci

try:
    from confluent_kafka import (
        OFFSET_BEGINNING,
        Consumer,
        KafkaError,
        KafkaException,
        Message,
        Producer,
        TopicPartition,
    )
    from confluent_kafka.admin import AdminClient
except ImportError as exc:  # a collection error would take every other test down with it
    if in_ci():
        raise
    pytest.skip(f"confluent-kafka is not installed: {exc}", allow_module_level=True)

from rtflow.testing.kafka_broker import (
    ENV_LIB,
    KafkaBroker,
    KafkaStartError,
    KafkaUnavailable,
    find_jars,
    find_java,
)

pytestmark = pytest.mark.integration

# librdkafka backs off reconnects up to 10 s by default; a broker that is back after a restart
# should be used at once.
FAST_RECONNECT = {"reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500}


def require_java_and_jars() -> None:
    """For the tests that start brokers of their own rather than use the session fixture."""
    try:
        find_java()
        find_jars()
    except KafkaUnavailable as exc:
        component_missing(str(exc))


def new_topic(broker: KafkaBroker, prefix: str, partitions: int) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    broker.create_topics(name, partitions=partitions)
    return name


def producer(broker: KafkaBroker, **config: Any) -> Producer:
    return Producer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            **FAST_RECONNECT,
            **config,
        }
    )


def produce_all(prod: Producer, topic: str, records: list[tuple[bytes, bytes]]) -> list[Message]:
    """Produce and flush; return the delivery reports, failing on any delivery error."""
    delivered: list[Message] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg)

    for key, value in records:
        prod.produce(topic, key=key, value=value, on_delivery=on_delivery)
        prod.poll(0)
    assert prod.flush(30) == 0, "messages still queued after 30 s"
    assert errors == []
    return delivered


def read_all(
    broker: KafkaBroker,
    topic: str,
    partitions: int,
    *,
    isolation: str = "read_committed",
    group: str | None = None,
    timeout: float = 30.0,
) -> list[Message]:
    """Everything in the topic, read up to the end of every partition.

    With a ``group`` the consumer subscribes (exercising the group coordinator and
    __consumer_offsets) and commits what it read; without one it reads assigned partitions.
    Reading to end-of-partition, not to an expected count, is what lets a test see records
    that should not be there.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": group or f"reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
            "isolation.level": isolation,
            # End-of-partition is only seen when an empty fetch returns, which the broker
            # holds back for up to fetch.wait.max.ms (500 ms by default) per read.
            "fetch.wait.max.ms": 50,
        }
    )
    if group is None:
        # Knowing the leaders before assign() saves a fixed 500 ms offset-query retry.
        consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    else:
        consumer.subscribe([topic])
    out: list[Message] = []
    at_end: set[int] = set()
    deadline = time.monotonic() + timeout
    try:
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, f"read {len(out)}, at end of {sorted(at_end)}"
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            err = msg.error()
            if err is None:
                out.append(msg)
            elif err.code() == KafkaError._PARTITION_EOF:
                at_end.add(msg.partition() or 0)  # always set on a consumed message
            else:
                raise KafkaException(err)
        if group is not None:
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return out


def test_keyed_messages_come_back_in_order_per_partition(kafka_broker: KafkaBroker) -> None:
    partitions, keys, per_key = 3, 12, 50
    topic = new_topic(kafka_broker, "keyed", partitions)
    records = [
        (f"key-{k}".encode(), f"key-{k}:{seq}".encode())
        for seq in range(per_key)
        for k in range(keys)
    ]
    delivered = produce_all(producer(kafka_broker), topic, records)

    group = f"group-{uuid.uuid4().hex[:8]}"
    consumed = read_all(kafka_broker, topic, partitions, group=group)

    assert len(consumed) == len(records)
    # Per partition: exactly the delivered records, in offset order.
    by_partition: dict[int | None, list[tuple[int | None, bytes | None]]] = defaultdict(list)
    for msg in sorted(delivered, key=lambda m: (m.partition() or 0, m.offset() or 0)):
        by_partition[msg.partition()].append((msg.offset(), msg.value()))
    seen: dict[int | None, list[tuple[int | None, bytes | None]]] = defaultdict(list)
    for msg in consumed:
        seen[msg.partition()].append((msg.offset(), msg.value()))
    assert seen == by_partition
    assert len(seen) == partitions, "12 keys should spread over all 3 partitions"
    # Per key: one partition, and the order it was produced in.
    for k in range(keys):
        mine = [m for m in consumed if m.key() == f"key-{k}".encode()]
        assert len({m.partition() for m in mine}) == 1
        assert [m.value() for m in mine] == [f"key-{k}:{seq}".encode() for seq in range(per_key)]
    # The group's offsets were stored (needs __consumer_offsets with replication factor 1).
    check = Consumer({"bootstrap.servers": kafka_broker.bootstrap_servers, "group.id": group})
    try:
        committed = check.committed([TopicPartition(topic, p) for p in range(partitions)], 10)
    finally:
        check.close()
    assert sorted(tp.offset for tp in committed) == sorted(len(v) for v in by_partition.values())


def test_aborted_transaction_is_invisible_to_read_committed(kafka_broker: KafkaBroker) -> None:
    topic = new_topic(kafka_broker, "txn", 2)
    prod = producer(kafka_broker, **{"transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
    prod.init_transactions(30)

    prod.begin_transaction()
    aborted = [(b"k%d" % i, b"aborted-%d" % i) for i in range(5)]
    for key, value in aborted:
        prod.produce(topic, key=key, value=value)
    prod.flush(30)  # on the broker, not just queued: the abort has something to hide
    prod.abort_transaction(30)

    prod.begin_transaction()
    committed = [(b"k%d" % i, b"committed-%d" % i) for i in range(5)]
    for key, value in committed:
        prod.produce(topic, key=key, value=value)
    prod.commit_transaction(30)

    def values(isolation: str) -> set[bytes | None]:
        return {m.value() for m in read_all(kafka_broker, topic, 2, isolation=isolation)}

    assert values("read_committed") == {v for _, v in committed}
    # The aborted records were written, so hiding them is the broker's doing.
    assert values("read_uncommitted") == {v for _, v in aborted + committed}


@pytest.mark.parametrize("kill", [False, True], ids=["clean-stop", "kill"])
def test_nothing_is_lost_over_a_restart(kafka_broker: KafkaBroker, kill: bool) -> None:
    topic = new_topic(kafka_broker, "restart", 2)
    address = kafka_broker.bootstrap_servers
    prod = producer(kafka_broker)
    before = [(b"k%d" % (i % 4), b"before-%d" % i) for i in range(100)]
    produce_all(prod, topic, before)

    kafka_broker.restart(kill=kill)
    assert kafka_broker.bootstrap_servers == address

    # The same producer carries on: clients see a broker that went away and came back.
    after = [(b"k%d" % (i % 4), b"after-%d" % i) for i in range(100)]
    produce_all(prod, topic, after)

    got = read_all(kafka_broker, topic, 2)
    assert sorted(m.value() or b"" for m in got) == sorted(v for _, v in before + after)
    for key in {k for k, _ in before}:
        values = [m.value() for m in got if m.key() == key]
        assert values == [v for k, v in before + after if k == key]


def test_a_dedicated_controller_outlives_a_broker_kill(tmp_path: Path) -> None:
    """The production topology: kill -9 takes the broker only; the controller fences it and
    takes it back, a committed transaction stays committed, and close() leaves no process."""
    with KafkaBroker(work_dir=tmp_path, dedicated_controller=True) as broker:
        topic = new_topic(broker, "dedicated", 2)
        prod = producer(broker, **{"transactional.id": f"tx-{uuid.uuid4().hex[:8]}"})
        prod.init_transactions(30)
        prod.begin_transaction()
        for i in range(50):
            prod.produce(topic, key=b"k%d" % (i % 4), value=b"before-%d" % i)
        prod.commit_transaction(30)
        roles = (tmp_path / "server.properties").read_text()
        assert (
            "process.roles=broker\n" in roles
            and "CONTROLLER://" not in roles.split("listeners=", 1)[1].split("\n", 1)[0]
        )
        controller_log = tmp_path / "controller" / "controller.log"
        starts = controller_log.read_text().count("starting a KRaft controller")

        broker.restart(kill=True)

        assert controller_log.read_text().count("starting a KRaft controller") == starts
        prod.begin_transaction()
        for i in range(50):
            prod.produce(topic, key=b"k%d" % (i % 4), value=b"after-%d" % i)
        prod.commit_transaction(30)
        got = read_all(broker, topic, 2, isolation="read_committed")
        assert len(got) == 100
        pids = [broker.pid, broker.controller_pid]
        assert None not in pids and pids[0] != pids[1]
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid or 0, 0)


def test_missing_jars_raise_kafka_unavailable_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = tmp_path / "absent"
    broker = KafkaBroker(lib_dir=absent)
    with pytest.raises(KafkaUnavailable, match=r"provision\.sh") as info:
        broker.start()
    assert str(absent) in str(info.value)
    assert not broker.running
    with pytest.raises(RuntimeError, match="not been started"):
        _ = broker.bootstrap_servers

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(ENV_LIB, str(empty))
    with pytest.raises(KafkaUnavailable, match=r"no kafka_2\.13-\*\.jar in"):
        KafkaBroker().start()


def test_missing_java_raises_kafka_unavailable(tmp_path: Path) -> None:
    with pytest.raises(KafkaUnavailable, match="java not found"):
        KafkaBroker(java=tmp_path / "no-java").start()


def test_broker_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    require_java_and_jars()
    broker = KafkaBroker(work_dir=tmp_path, config={"num.io.threads": "none"})
    with pytest.raises(KafkaStartError, match=r"num\.io\.threads"):
        broker.start()
    assert not broker.running


def test_start_timeout_reports_the_log_tail(tmp_path: Path) -> None:
    require_java_and_jars()
    broker = KafkaBroker(work_dir=tmp_path, start_timeout=0.5)
    with pytest.raises(KafkaStartError, match="did not answer") as info:
        broker.start()
    assert "rtflow: starting kafka.Kafka" in str(info.value)
    assert not broker.running


def test_script_serves_until_interrupted(tmp_path: Path) -> None:
    require_java_and_jars()
    stderr_path = tmp_path / "stderr.txt"  # a file, not a pipe nobody drains while it runs
    data_dir = tmp_path / "data-dir"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rtflow.testing.kafka_broker",
                *("--data-dir", str(data_dir), "--topic", "orders", "--partitions", "2"),
            ],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            start_new_session=True,  # so the finally below can end the JVM too on a failure
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 90)
        assert ready, "no bootstrap address printed within 90 s"
        address = proc.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        topics = AdminClient({"bootstrap.servers": address}).list_topics(timeout=10).topics
        assert len(topics["orders"].partitions) == 2

        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
        assert "Kafka 4." in stderr_path.read_text()
        # The broker went with it: its data stayed (a given --data-dir is kept), its port closed.
        assert (data_dir / "data" / "meta.properties").exists()
        host, port = address.split(":")
        with socket.socket() as sock:
            assert sock.connect_ex((host, int(port))) != 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
