"""Driving the real stream plane from a test: produce events, run worker processes (the same
command a stream Deployment runs), read the output back ``read_committed``, and check that every
expected event came out exactly once."""

from __future__ import annotations

import json
import os
import secrets
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.stream.launcher import (
    WorkerProcess,
    free_port,
    load_stream_pipeline,
    scrape,
    worker_command,
)
from rtflow.stages.stream.settings import EXIT_FATAL
from rtflow.stream_layout import stream_topics
from rtflow.testing.kafka_broker import KafkaBroker

HERE = Path(__file__).resolve().parent
FRAUD_STREAM = str(HERE / "stream_pipelines" / "fraud_stream.py")


@dataclass(frozen=True)
class Produced:
    key: str
    value: bytes
    partition: int
    offset: int


def produce(brokers: str, topic: str, events: Sequence[tuple[str, bytes]]) -> list[Produced]:
    """Send (key, value) pairs and return where each landed (for dead-letter offset checks)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    landed: dict[int, Produced] = {}
    errors: list[str] = []

    def delivered(index: int, key: str, value: bytes) -> Callable[[Any, Any], None]:
        def report(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                landed[index] = Produced(key, value, msg.partition(), msg.offset())

        return report

    for index, (key, value) in enumerate(events):
        while True:
            try:
                producer.produce(
                    topic, value=value, key=key.encode(), on_delivery=delivered(index, key, value)
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    assert producer.flush(60) == 0, "events were not all delivered"
    assert not errors, errors[:3]
    return [landed[i] for i in range(len(events))]


@dataclass
class Read:
    key: str
    value: bytes
    headers: dict[str, bytes]
    partition: int
    offset: int


def read_committed(
    brokers: str,
    topic: str,
    *,
    expected: int,
    timeout: float = 120.0,
    settle: float = 2.0,
    stop: Callable[[], bool] | None = None,
) -> list[Read]:
    """Everything visible to a ``read_committed`` consumer: waits until ``expected`` records are
    in, then ``settle`` seconds more, so a duplicate arriving late is still counted."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"check-{secrets.token_hex(4)}",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[Read] = []
    deadline = time.monotonic() + timeout
    settled_at: float | None = None
    try:
        while time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.2):
                if msg.error() is not None:
                    continue
                found.append(
                    Read(
                        (msg.key() or b"").decode(),
                        msg.value() or b"",
                        {k: v or b"" for k, v in msg.headers() or []},
                        msg.partition(),
                        msg.offset(),
                    )
                )
            if len(found) >= expected and settled_at is None:
                settled_at = time.monotonic()
            if settled_at is not None and time.monotonic() - settled_at >= settle:
                break
            if stop is not None and stop():
                break
    finally:
        consumer.close()
    return found


def exactly_once(found: Sequence[Read], expected_keys: Sequence[str]) -> str | None:
    """None when every expected key is there once and nothing else is; else what is wrong."""
    counts = Counter(r.key for r in found)
    doubled = sorted(k for k, n in counts.items() if n > 1)
    missing = sorted(set(expected_keys) - set(counts))
    extra = sorted(set(counts) - set(expected_keys))
    if not (doubled or missing or extra):
        return None
    return (
        f"{len(found)} records for {len(expected_keys)} events: {len(doubled)} doubled "
        f"{doubled[:5]}, {len(missing)} missing {missing[:5]}, {len(extra)} unexpected "
        f"{extra[:5]}"
    )


@dataclass
class Workers:
    """Worker processes of the fraud test pipeline, stopped (killed if need be) at the end."""

    target: str
    brokers: str
    triton: dict[str, str]
    log_dir: Path
    env: dict[str, str]
    children: list[WorkerProcess] = field(default_factory=list)

    def start(self, index: int, group: int = 0, extra: Sequence[str] = ()) -> WorkerProcess:
        port = free_port()
        child = WorkerProcess(
            group,
            index,
            [
                *worker_command(
                    self.target,
                    group=group,
                    worker_id=f"w{group}-{index}",
                    brokers=self.brokers,
                    triton=self.triton,
                    metrics_port=port,
                ),
                *extra,
            ],
            port,
            self.log_dir / f"worker-{group}-{index}.log",
            self.env,
        ).start()
        self.children.append(child)
        return child

    def processed(self) -> float:
        """Events processed (or dead-lettered) so far by every live worker, from its metrics."""
        total = 0.0
        for child in self.children:
            if not child.alive:
                continue
            try:
                values = scrape(child.metrics_port, timeout=0.5)
            except OSError:
                continue
            total += sum(v for k, v in values.items() if k.startswith("rtflow_stream_events_total"))
        return total

    def supervise(self) -> bool:
        """Do what Kubernetes (or ``rtflow run --local``) does for a worker that exited with
        EXIT_FATAL: start it again, with the same id. A worker that exits with anything else
        the test did not cause is a failure. Returns False, so it can be a ``stop`` callback."""
        for child in self.children:
            code = child.process.poll() if child.process is not None else None
            if code == EXIT_FATAL:
                assert child.restarts < 3, f"worker keeps failing: {self.logs()}"
                child.restarts += 1
                child.start()
            elif code not in (None, 0, -signal.SIGKILL, -signal.SIGTERM):
                raise AssertionError(f"worker exited {code}: {self.logs()}")
        return False

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            self.supervise()
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; {self.logs()}")

    def logs(self) -> str:
        tails = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            tails.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(tails)

    def stop_all(self) -> list[int | None]:
        for child in self.children:
            child.terminate()
        return [child.wait(30.0) for child in self.children]

    def kill_all(self) -> None:
        for child in self.children:
            if child.alive and child.process is not None:
                os.kill(child.process.pid, signal.SIGCONT)  # a paused one must die too
            child.kill()


def fraud_events(count: int, seed: int = 11) -> list[tuple[str, bytes]]:
    """The example's generator: realistic transactions and about 3 % poison events."""
    import sys

    examples = str(HERE.parent / "examples" / "models")
    if examples not in sys.path:
        sys.path.insert(0, examples)
    import fraud_events as generator  # type: ignore[import-not-found]

    return list(generator.events(count, seed))


def expected_decisions(events: Sequence[tuple[str, bytes]]) -> list[str]:
    """The keys of the events that must give a decision: JSON objects that pass the trigger's
    filter (written out here, not taken from rtflow) with a numeric amount and no poison."""
    keys = []
    for key, value in events:
        try:
            body = json.loads(value)
        except ValueError:
            continue
        if not isinstance(body, dict) or body.get("poison"):
            continue
        amount = body.get("amount")
        if isinstance(amount, bool) or not isinstance(amount, int | float):
            continue
        if body.get("type") in ("purchase", "cash_withdrawal") and amount > 0:
            keys.append(key)
    return keys


def iter_lines(path: Path) -> Iterator[str]:
    with path.open(encoding="utf-8") as handle:
        yield from handle


def fraud_stream_triton(work_dir: Path) -> Any:
    """A local Triton serving what the test stream pipeline's inference steps need (not
    started); a missing Triton wheel or numpy skips the test (fails under CI=true)."""
    from components import local_triton_for

    from rtflow.stages.stream.launcher import load_stream_pipeline

    return local_triton_for(load_stream_pipeline(FRAUD_STREAM), work_dir)


EVENTS = 100_000


class Plane:
    """One test's topics, events and workers on a broker and a Triton."""

    def __init__(self, broker: KafkaBroker, triton: TritonServer, tmp: Path, **env: str):
        self.suffix = f"-{secrets.token_hex(4)}"
        self.env = {**os.environ, "RTFLOW_TEST_TOPICS": self.suffix, "PYTHONUNBUFFERED": "1", **env}
        os.environ["RTFLOW_TEST_TOPICS"] = self.suffix  # for the topic names read below
        try:
            pipeline = load_stream_pipeline(FRAUD_STREAM)
        finally:
            del os.environ["RTFLOW_TEST_TOPICS"]
        assert pipeline.stream is not None
        self.stream = pipeline.stream
        self.broker = broker
        broker.create_topics(*stream_topics(pipeline), partitions=4)
        self.decisions = next(t for t in stream_topics(pipeline) if t.startswith("decisions"))
        self.workers = Workers(
            FRAUD_STREAM,
            broker.bootstrap_servers,
            {"fraud-triton": f"127.0.0.1:{triton.grpc_port}"},
            tmp,
            self.env,
        )

    def feed(self, count: int, seed: int = 11) -> list[str]:
        events = fraud_events(count, seed)
        produce(self.broker.bootstrap_servers, self.stream.source_topic, events)
        return expected_decisions(events)

    def check(self, expected: list[str], timeout: float = 240.0) -> None:
        found = read_committed(
            self.broker.bootstrap_servers,
            self.decisions,
            expected=len(expected),
            timeout=timeout,
            stop=self.workers.supervise,
        )
        problem = exactly_once(found, expected)
        assert problem is None, f"{problem}\n{self.workers.logs()}"
        for record in found[:50]:
            decision = json.loads(record.value)
            assert decision["transaction_id"] == record.key
            assert decision["action"] in ("allow", "review")
            assert record.headers["traceparent"].startswith(b"00-")


class Feeder(threading.Thread):
    """Live traffic: events ``{"amount": n}``, n = 0, 1, ..., five every 50 ms to ``topic``
    until ``halt`` is set; ``sent`` counts them."""

    def __init__(self, brokers: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.brokers, self.topic, self.sent = brokers, topic, 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            batch = [(f"k{self.sent + i}", json.dumps({"amount": self.sent + i}).encode())
                     for i in range(5)]  # fmt: skip
            produce(self.brokers, self.topic, batch)
            self.sent += len(batch)
            time.sleep(0.05)
