"""Helpers for the fault tests of ``rtflow run --local`` against a real broker and Triton: run the
CLI as a process, find every process it started (by /proc), read topics and committed offsets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtflow.testing.kafka_broker import KafkaBroker

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "examples") not in sys.path:
    sys.path.insert(0, str(ROOT / "examples"))  # the fraud example's models and sample events
FRAUD = ROOT / "examples" / "fraud_detection.py"
STAND = "local_pipelines.fraud_stand_ins"
FRAUD_ARGS = [
    "--plane", "workflow", "--auto-approve", "--no-progress",
    "--stand-in", f"block-card={STAND}:block_card",
    "--stand-in", f"notify-on-call={STAND}:notify_on_call",
    # publish-decision's own env= names the production brokers (SASL_SSL): here it publishes
    # to the test broker, $KAFKA_BROKERS of cli_env, in plain text
    "--stage-env", "publish-decision:KAFKA_BROKERS",
    "--stage-env", "publish-decision:KAFKA_SECURITY_PROTOCOL",
    "--stage-env", "publish-decision:KAFKA_SASL_MECHANISM",
]  # fmt: skip


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return None if fields[0] == "Z" else fields


def alive(pid: int) -> bool:
    return _stat(pid) is not None


def descendants(pid: int) -> dict[int, str]:
    """Every live process below ``pid`` (by parent links), with its command name."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: dict[int, str] = {}
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            found[child] = command.replace(b"\0", b" ").decode(errors="replace")
            stack.append(child)
    return found


def triton_ports(processes: dict[int, str]) -> list[int]:
    ports = []
    for command in processes.values():
        if "tritonserver" in command.split(" ")[0]:
            for arg in command.split():
                if arg.startswith(("--http-port=", "--grpc-port=", "--metrics-port=")):
                    ports.append(int(arg.split("=")[1]))
    return ports


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_gone(pids: Iterable[int], ports: Sequence[int], timeout: float = 30) -> list[int]:
    """The pids (and ports) still alive/listening after ``timeout`` seconds; [] when all gone."""
    deadline = time.monotonic() + timeout
    left = list(pids)
    while time.monotonic() < deadline:
        left = [p for p in left if alive(p)] + [-port for port in ports if listening(port)]
        if not left:
            return []
        time.sleep(0.1)
    return left


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass
class Cli:
    """``python -m rtflow.cli run --local TARGET ARGS...`` as a process of its own."""

    target: str
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    seen: dict[int, str] = field(default_factory=dict)

    def start(self) -> Cli:
        handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtflow.cli", "run", "--local", self.target, *self.args],
            stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, env=self.env,
        )  # fmt: skip
        handle.close()
        return self

    def watch(self) -> dict[int, str]:
        """Remember every process below the run seen so far (for the leftover check)."""
        assert self.proc is not None
        self.seen.update(descendants(self.proc.pid))
        return self.seen

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.watch()
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float = 120) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def cleanup(self) -> None:
        """Test clean-up: SIGKILL the run and every process seen below it (only this test's)."""
        if self.proc is not None and self.proc.poll() is None:
            self.watch()
            self.proc.kill()
            self.proc.wait()
        stop_all(self.seen)


def cli_env(broker: KafkaBroker) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT / "examples"), *sys.path]),
        "KAFKA_BROKERS": broker.bootstrap_servers,  # the fraud example's publish stage
    }


def produce(broker: KafkaBroker, topic: str, messages: Sequence[tuple[bytes | None, bytes]],
            **config: Any) -> None:  # fmt: skip
    from rtflow.stages.kafka_io import producer

    p = producer(broker.bootstrap_servers, **config)
    for key, value in messages:
        p.produce(topic, value=value, key=key)
    assert p.flush(30) == 0


class TopicReader:
    """Reads a topic from the start, incrementally, up to its current end."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        from confluent_kafka import Consumer

        self.topic = topic
        self.consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap_servers,
                "group.id": unique("reader"),
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "fetch.max.bytes": 10_000_000,
            }
        )
        self.consumer.subscribe([topic])
        self.messages: list[Any] = []

    def catch_up(self, timeout: float = 30) -> list[Any]:
        """The messages that arrived since the last call (every one up to the end now)."""
        from confluent_kafka import TopicPartition

        meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        ends = {
            p: self.consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
            for p in meta.partitions
        }
        new: list[Any] = []
        got = {p: -1 for p in ends}
        for m in self.messages:
            got[m.partition()] = max(got[m.partition()], m.offset())
        deadline = time.monotonic() + timeout
        while any(got[p] + 1 < end for p, end in ends.items()) and time.monotonic() < deadline:
            msg = self.consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            got[msg.partition()] = max(got[msg.partition()], msg.offset())
            new.append(msg)
        self.messages += new
        return new

    def close(self) -> None:
        self.consumer.close()


def committed(broker: KafkaBroker, group: str, topic: str, partitions: int) -> dict[int, int]:
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": group})
    try:
        answer = consumer.committed(
            [TopicPartition(topic, p) for p in range(partitions)], timeout=10
        )
        return {tp.partition: tp.offset for tp in answer}
    finally:
        consumer.close()


def event_ids(messages: Iterable[Any]) -> list[str]:
    return [json.loads(m.value())["event"] for m in messages]


def stop_all(processes: dict[int, str]) -> None:
    """Test clean-up: SIGKILL whatever of these is still alive (only pids this test started)."""
    for pid in processes:
        if alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
