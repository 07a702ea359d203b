"""``rtflow run --local`` survives every bad event and every signal, against a real broker and a
real Triton (issue #12): poison messages are dead-lettered with their reason and source and the
run goes on; offsets are committed once the broker confirms them, so a kill redoes only what was
in flight; SIGTERM and Ctrl-C drain, commit and stop every child; and kill -9 leaves no child
behind."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from local_faults_harness import (
    FRAUD,
    FRAUD_ARGS,
    ROOT,
    Cli,
    TopicReader,
    cli_env,
    committed,
    event_ids,
    produce,
    triton_ports,
    unique,
    wait_gone,
)

from rtflow import ir
from rtflow.gpu import triton_server as ts
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

FILTERED = f"{ROOT / 'tests' / 'local_pipelines' / 'filtered.py'}:with_data_filters"


def need_triton() -> None:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))


def good(i: int) -> bytes:
    return json.dumps({"kind": "buy", "amount": 11 + i, "vip": True}).encode()


def test_poison_messages_are_dead_lettered_with_their_reason_and_the_run_goes_on(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    source, results, dead = unique("orders"), unique("results"), unique("dead")
    kafka_broker.create_topics(source, config={"max.message.bytes": "3000000"})
    kafka_broker.create_topics(results, dead)  # the default limit, 1 MB
    poison = {
        "deep": b"[" * 50_000 + b"]" * 50_000,
        "digits": b'{"kind": "buy", "vip": true, "amount": ' + b"9" * 400 + b"}",
        "inf": b'{"kind": "buy", "vip": true, "amount": 1e999}',
        "big-text": b"x" * 2_000_000,
        "big-list": json.dumps(["y" * 1000] * 2000).encode(),  # 2 MB: not the input's dict
    }
    messages = [(None, good(i)) for i in range(5)]
    messages += [(kind.encode(), value) for kind, value in poison.items()]
    messages += [(None, good(i)) for i in range(5, 10)]
    produce(kafka_broker, source, messages, **{"message.max.bytes": 3_000_000})
    args = [
        "--kafka-topic", source, "--kafka-brokers", kafka_broker.bootstrap_servers,
        "--kafka-group", "poison", "--idle-timeout", "3", "--no-progress",
        "--output-topic", results, "--dead-letter-topic", dead,
    ]  # fmt: skip
    cli = Cli(FILTERED, args, cli_env(kafka_broker), tmp_path / "run.log").start()
    assert cli.wait() == 1, cli.output()  # the poison events failed, and the run says so
    assert "15 events in" in cli.output()
    ok = TopicReader(kafka_broker, results)
    letters = TopicReader(kafka_broker, dead)
    try:
        assert len(ok.catch_up()) == 10
        found = letters.catch_up()
    finally:
        ok.close()
        letters.close()
    assert len(found) == len(poison)
    by_offset = {int(dict(m.headers())["rtflow-source-offset"]): m for m in found}
    expected = {
        5: "nested too deeply",
        6: "(400 digits) is out of range",
        7: "the number 1e999 is out of range",
        8: "the message is not JSON",
        9: "payload: input 'order'",
    }
    for offset, reason in expected.items():
        message = by_offset[offset]
        record = json.loads(message.value())
        assert reason in record["reason"], record["reason"]
        assert record["source"] == {"topic": source, "partition": 0, "offset": offset}
        headers = dict(message.headers())
        assert headers["rtflow-source-topic"] == source.encode()
        assert headers["rtflow-reason"].decode() == record["reason"][:4000]
        assert len(message.value()) <= 1_000_000
    for offset in (8, 9):  # the 2 MB ones: cut to what the topic takes, the size kept
        record = json.loads(by_offset[offset].value())
        assert record["truncated"]["bytes"] > 2_000_000
    # every offset committed: a restart of the group reads nothing, so nothing is stuck
    assert committed(kafka_broker, "poison", source, 1) == {0: 15}
    again = Cli(FILTERED, args, cli_env(kafka_broker), tmp_path / "again.log").start()
    assert again.wait() == 0, again.output()
    assert "0 events in" in again.output()


def test_offsets_follow_the_work_and_a_kill_redoes_nothing_that_was_done(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    source, results = unique("orders"), unique("results")
    kafka_broker.create_topics(source, results, partitions=2)
    produce(kafka_broker, source, [(str(i).encode(), good(i)) for i in range(200)])
    args = [
        "--kafka-topic", source, "--kafka-brokers", kafka_broker.bootstrap_servers,
        "--kafka-group", "dupes", "--no-progress", "--output-topic", results,
        "--max-in-flight", "8",
    ]  # fmt: skip
    cli = Cli(FILTERED, args, cli_env(kafka_broker), tmp_path / "run.log").start()
    reader = TopicReader(kafka_broker, results)
    try:
        deadline = time.monotonic() + 120
        while len(reader.messages) < 200:
            assert time.monotonic() < deadline and cli.proc and cli.proc.poll() is None
            reader.catch_up(timeout=1)
        done_at = time.monotonic()
        # the committed offsets reach the end within a second of the last result, not 5 s
        while sum(committed(kafka_broker, "dupes", source, 2).values()) != 200:
            assert time.monotonic() - done_at < 1.0, committed(kafka_broker, "dupes", source, 2)
            time.sleep(0.05)
        cli.signal(signal.SIGKILL)
        cli.wait()
        assert wait_gone(cli.seen, []) == [], cli.seen
        # a restart (after the dead member's session ends) finds nothing to redo
        again = Cli(FILTERED, [*args, "--idle-timeout", "8"], cli_env(kafka_broker),
                    tmp_path / "again.log").start()  # fmt: skip
        assert again.wait() == 0, again.output()
        assert "0 events in" in again.output()
        assert len(reader.catch_up()) == 0
        assert sorted(event_ids(reader.messages)) == sorted(set(event_ids(reader.messages)))
    finally:
        reader.close()
        cli.cleanup()


def test_a_clean_exit_commits_every_event(kafka_broker: KafkaBroker, tmp_path: Path) -> None:
    source = unique("orders")
    kafka_broker.create_topics(source, partitions=2)
    produce(kafka_broker, source, [(str(i).encode(), good(i)) for i in range(200)])
    args = [
        "--kafka-topic", source, "--kafka-brokers", kafka_broker.bootstrap_servers,
        "--kafka-group", "clean", "--no-progress", "--max-events", "200",
        "--output", str(tmp_path / "out.jsonl"),
    ]  # fmt: skip
    cli = Cli(FILTERED, args, cli_env(kafka_broker), tmp_path / "run.log").start()
    try:
        assert cli.wait() == 0, cli.output()
    finally:
        cli.cleanup()
    assert sum(committed(kafka_broker, "clean", source, 2).values()) == 200


def _fraud_run(broker: KafkaBroker, tmp_path: Path, count: int, name: str) -> tuple[Cli, str, str]:
    from models import fraud_events

    source, results, dead = unique("tx"), unique("decisions"), unique("tx-dead")
    broker.create_topics(source, results, dead, partitions=2)
    from confluent_kafka.admin import AdminClient

    existing = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
    if "fraud-decisions" not in existing.topics:  # the example's publish stage writes there
        broker.create_topics("fraud-decisions", partitions=2)
    samples = fraud_events.events(count, seed=11)
    produce(broker, source, [(k.encode(), v) for k, v in samples])
    args = [
        "--kafka-topic", source, "--kafka-brokers", broker.bootstrap_servers,
        "--kafka-group", name, "--output-topic", results, "--dead-letter-topic", dead,
        "--max-in-flight", "8", "--log-dir", str(tmp_path / "logs"), *FRAUD_ARGS,
    ]  # fmt: skip
    return Cli(str(FRAUD), args, cli_env(broker), tmp_path / f"{name}.log"), source, results


def _wait_for_results(cli: Cli, reader: TopicReader, count: int, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while len(reader.messages) < count:
        assert cli.proc is not None and cli.proc.poll() is None, cli.output()[-3000:]
        assert time.monotonic() < deadline, cli.output()[-3000:]
        reader.catch_up(timeout=1)
        cli.watch()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_sigterm_and_ctrl_c_drain_commit_and_stop_triton_and_every_child(
    kafka_broker: KafkaBroker, tmp_path: Path, sig: int, code: int
) -> None:
    need_triton()
    name = f"drain-{sig}"
    cli, source, results = _fraud_run(kafka_broker, tmp_path, 3000, name)
    reader = TopicReader(kafka_broker, results)
    try:
        cli.start()
        _wait_for_results(cli, reader, 30)
        processes = cli.watch()
        ports = triton_ports(processes)
        assert len(ports) == 3, processes  # Triton was started, with its three ports
        assert any("triton_python_backend_stub" in c for c in processes.values()), processes
        stopped = time.monotonic()
        cli.signal(sig)
        assert cli.wait(60) == code, cli.output()[-3000:]
        assert time.monotonic() - stopped < 30
        assert "finishing the events in flight" in cli.output()
        assert wait_gone(cli.seen, ports) == [], cli.seen
        # drained and committed: everything below the committed offsets has its record
        # (results here; dead letters and filtered events are the rest), nothing after a gap
        reader.catch_up()
        positions = {p: max(o, 0) for p, o in committed(kafka_broker, name, source, 2).items()}
        assert sum(positions.values()) >= len(reader.messages) > 0
        written = {tuple(map(int, e.rsplit("/", 2)[1:])) for e in event_ids(reader.messages)}
        assert all(o < positions[p] for p, o in written), "a result beyond the commit"
        assert sum(positions.values()) < 3000, "the run stopped before the end"
    finally:
        reader.close()
        cli.cleanup()


def test_kill_9_of_the_run_leaves_no_child_behind(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    need_triton()
    cli, _, results = _fraud_run(kafka_broker, tmp_path, 3000, "kill-9")
    reader = TopicReader(kafka_broker, results)
    try:
        cli.start()
        _wait_for_results(cli, reader, 20)
        processes = cli.watch()
        ports = triton_ports(processes)
        kinds = " ".join(processes.values())
        assert "tritonserver" in kinds and "rtflow.stages.workers" in kinds
        assert "rtflow.stages.reaper" in kinds
        cli.signal(signal.SIGKILL)
        assert cli.wait() == -signal.SIGKILL
        # Triton (and its stubs), the workers and the reaper itself: all gone, ports free
        assert wait_gone(cli.seen, ports) == [], cli.seen
    finally:
        reader.close()
        cli.cleanup()


BROKER_PARENT = """
import sys, time
from rtflow.testing.kafka_broker import KafkaBroker
broker = KafkaBroker().start()
print(broker.pid, broker.bootstrap_servers.rsplit(":", 1)[1], flush=True)
time.sleep(600)
"""


def test_a_broker_started_here_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """The stream plane's ``rtflow run --local`` starts a broker: a kill -9 of it must not leave
    the JVM behind (the kernel's parent-death signal, set when the broker starts)."""
    import subprocess
    import sys

    from rtflow.testing.kafka_broker import KafkaUnavailable, find_jars, find_java

    try:
        find_java()
        find_jars()
    except KafkaUnavailable as exc:
        component_missing(str(exc))
    parent = subprocess.Popen([sys.executable, "-c", BROKER_PARENT], stdout=subprocess.PIPE,
                              text=True, cwd=tmp_path)  # fmt: skip
    try:
        assert parent.stdout is not None
        jvm, port = map(int, parent.stdout.readline().split())
        parent.kill()
        parent.wait()
        assert wait_gone([jvm], [port], timeout=10) == []
    finally:
        if parent.poll() is None:
            parent.kill()


def test_kill_9_of_a_stream_plane_run_leaves_no_child_behind(tmp_path: Path) -> None:
    """The stream plane's run starts its own broker, Triton and workers (stages/stream): the
    command's reaper stops them all when the run is killed."""
    import subprocess
    import sys

    from rtflow.testing.kafka_broker import KafkaUnavailable, find_jars, find_java

    try:
        find_java()
        find_jars()
    except KafkaUnavailable as exc:
        component_missing(str(exc))
    need_triton()
    events = tmp_path / "events.jsonl"
    generator = ROOT / "examples" / "models" / "fraud_events.py"
    made = subprocess.run([sys.executable, str(generator), "--count", "200000"],
                          check=True, capture_output=True, text=True)  # fmt: skip
    events.write_text(made.stdout)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "examples"), *sys.path])}
    cli = Cli(str(FRAUD), ["--events", str(events), "--no-progress"], env, tmp_path / "run.log")
    try:
        cli.start()
        deadline = time.monotonic() + 120
        while True:
            kinds = " ".join(cli.watch().values())
            if "kafka.Kafka" in kinds and "tritonserver" in kinds and "stages stream" in kinds:
                break
            assert cli.proc is not None and cli.proc.poll() is None, cli.output()[-2000:]
            assert time.monotonic() < deadline, kinds
            time.sleep(0.2)
        time.sleep(1.0)
        ports = triton_ports(cli.watch())
        cli.signal(signal.SIGKILL)
        cli.wait()
        assert wait_gone(cli.seen, ports, timeout=30) == [], cli.seen
    finally:
        cli.cleanup()


def _with_score_retry(pipeline: Any) -> Any:
    """The scoring pipeline with its inference step retried 3 times with backoff."""
    retry = ir.Retry(3, "Always", ir.Backoff("1s", 2, None))
    stages = tuple(
        dataclasses.replace(s, retry=retry) if s.kind == "inference" else s for s in pipeline.stages
    )
    return dataclasses.replace(pipeline, stages=stages)


def test_triton_refusing_the_tensors_is_dead_lettered_at_once_and_triton_down_is_retried(
    tmp_path: Path,
) -> None:
    need_triton()
    from local_pipelines import scoring

    from rtflow.stages.events import ListSource, MemorySink
    from rtflow.stages.local import run_local

    pipeline = _with_score_retry(scoring.scoring.build())
    waits: list[float] = []
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipeline,
        ListSource([{"features": [1.0, 2.0, 3.0]}, {"features": [0.1] * 5}]),  # 3 of 5 inputs
        output=out,
        dead_letter=dead,
        sleep=waits.append,
        log_dir=tmp_path / "logs",
    )
    assert summary.succeeded == 1 and summary.failed == 1
    (letter,) = dead.records
    reason = letter["reason"]
    assert "task score failed: bad_input:" in reason and "Shape does not match" in reason
    assert "attempt" not in reason and waits == []  # one attempt, no backoff
    # a Triton that does not answer is the server's state: retried, with backoff
    down = MemorySink()
    run_local(
        pipeline,
        ListSource([{"features": [0.1] * 5}]),
        output=MemorySink(),
        dead_letter=down,
        sleep=waits.append,
        triton="http://127.0.0.1:9",
        log_dir=tmp_path / "logs2",
    )
    assert "after 4 attempt(s)" in down.records[0]["reason"] and waits == [1.0, 2.0, 4.0]
