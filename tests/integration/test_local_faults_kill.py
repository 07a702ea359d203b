"""The fraud example's local run (workflow plane, a real broker and the Triton it starts) killed
twenty times at random points, with kill -9 and SIGTERM, and restarted each time: in the end
every event is processed at least once, a kill -9 redoes at most what was in flight (read and
not committed: at most twice ``--max-in-flight``), a SIGTERM redoes nothing, and no process of
any run is left behind."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import pytest
from components import component_missing
from local_faults_harness import (
    FRAUD,
    FRAUD_ARGS,
    Cli,
    TopicReader,
    cli_env,
    event_ids,
    produce,
    triton_ports,
    unique,
    wait_gone,
)

from rtflow.gpu import triton_server as ts
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

KILLS = 20
IN_FLIGHT = 8  # --max-in-flight: events run at once
# What a run has read and not committed is at most twice that (running and queued: the reader
# waits for a commit beyond it, rtflow.stages.offsets), and only that can be redone.
WINDOW = 2 * IN_FLIGHT


def _filtered(message: bytes) -> bool | None:
    """Whether the example's trigger drops the message (None: not JSON, a dead letter)."""
    try:
        body = json.loads(message)
    except ValueError:
        return None
    amount = body.get("amount")
    ok_type = body.get("type") in ("purchase", "cash_withdrawal")
    return not (ok_type and isinstance(amount, (int, float)) and amount > 0)


def test_the_fraud_run_killed_twenty_times_loses_nothing_and_redoes_only_what_was_in_flight(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))
    from confluent_kafka.admin import AdminClient
    from models import fraud_events

    rng = random.Random(20)
    count = 4000
    source, results, dead = unique("tx"), unique("decisions"), unique("tx-dead")
    kafka_broker.create_topics(source, results, dead, partitions=2)
    topics = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}).list_topics(
        timeout=10
    )
    if "fraud-decisions" not in topics.topics:
        kafka_broker.create_topics("fraud-decisions", partitions=2)
    samples = fraud_events.events(count, seed=3)
    produce(kafka_broker, source, [(k.encode(), v) for k, v in samples])
    # every event by id (topic/partition/offset), and which the trigger's filter drops
    every = TopicReader(kafka_broker, source)
    try:
        drops = {f"{source}/{m.partition()}/{m.offset()}": _filtered(m.value())
                 for m in every.catch_up()}  # fmt: skip
    finally:
        every.close()
    assert len(drops) == count
    must_appear = {e for e, dropped in drops.items() if not dropped}
    args = [
        "--kafka-topic", source, "--kafka-brokers", kafka_broker.bootstrap_servers,
        "--kafka-group", "fraud-kills", "--output-topic", results, "--dead-letter-topic", dead,
        "--max-in-flight", str(IN_FLIGHT), "--log-dir", str(tmp_path / "logs"), *FRAUD_ARGS,
    ]  # fmt: skip
    kills = [signal.SIGKILL] * (KILLS // 2) + [signal.SIGTERM] * (KILLS // 2)
    rng.shuffle(kills)
    ok, letters = TopicReader(kafka_broker, results), TopicReader(kafka_broker, dead)
    seen: set[str] = set()
    # Which run wrote each event last, and how many of each run's events a later run wrote
    # again: a redo is charged to the run whose work was redone (the one that stopped without
    # committing it), not to whichever run happened to stop just before. A SIGTERMed run that
    # never reached one partition leaves that partition's backlog to a later run, and that
    # backlog is its SIGKILLed predecessor's.
    last_writer: dict[str, int] = {}
    redone_of: dict[int, int] = {}
    stopped_by: dict[int, str] = {}
    started = time.monotonic()

    counted = [0, 0]  # messages of (ok, letters) already accounted for

    def new_ids() -> list[str]:
        ok.catch_up()
        letters.catch_up()
        ids = event_ids(ok.messages[counted[0] :]) + event_ids(letters.messages[counted[1] :])
        counted[:] = [len(ok.messages), len(letters.messages)]
        return ids

    def account(run: int, previous: int | None, ids: list[str]) -> None:
        """Charge each event written again to the run that wrote it before. An event twice
        among one run's own outputs is a killed predecessor's write that reached the broker
        after it died, then this run's redo of it: charged to that predecessor."""
        here: set[str] = set()
        for event in ids:
            if event in here:
                if previous is not None:
                    redone_of[previous] = redone_of.get(previous, 0) + 1
                continue
            here.add(event)
            if event in last_writer:
                redone_of[last_writer[event]] = redone_of.get(last_writer[event], 0) + 1
            last_writer[event] = run
        seen.update(ids)

    clis: list[Cli] = []
    early_sigterms: list[int] = []
    try:
        previous: int | None = None  # the last run that wrote anything
        for k, sig in enumerate(kills):
            cli = Cli(str(FRAUD), args, cli_env(kafka_broker), tmp_path / f"run-{k}.log").start()
            clis.append(cli)
            if k % 2:  # any point: while starting, joining the group, or running
                deadline = time.monotonic() + rng.uniform(0.3, 4.0)
                while time.monotonic() < deadline:
                    cli.watch()
                    time.sleep(0.05)
            else:  # while events are being processed
                base = len(ok.messages) + len(letters.messages)
                deadline = time.monotonic() + 60
                while len(ok.messages) + len(letters.messages) == base:
                    assert time.monotonic() < deadline, cli.output()[-2000:]
                    ok.catch_up(timeout=0.2)
                    letters.catch_up(timeout=0.2)
                    cli.watch()
                time.sleep(rng.uniform(0.0, 1.0))
            assert cli.proc is not None and cli.proc.poll() is None, cli.output()[-2000:]
            cli.signal(sig)
            code = cli.wait(90)
            if code == -signal.SIGTERM and not cli.seen:
                # SIGTERM before the run's handler exists (the interpreter starting, importing
                # rtflow): nothing was started or read, so dying there loses nothing
                early_sigterms.append(k)
            else:
                wanted = 0 if sig == signal.SIGTERM else -signal.SIGKILL
                assert code == wanted, cli.output()[-2000:]
            left = wait_gone(cli.seen, triton_ports(cli.seen), timeout=30)
            assert left == [], f"run {k} ({sig.name}) left {left}: {cli.seen}"
            ids = new_ids()
            account(k, previous, ids)
            stopped_by[k] = sig.name
            if ids:
                previous = k
        # the last run reads to the end
        last = Cli(str(FRAUD), [*args, "--idle-timeout", "8"], cli_env(kafka_broker),
                   tmp_path / "last.log").start()  # fmt: skip
        clis.append(last)
        assert last.wait(300) == 1, last.output()[-2000:]  # the invalid events are dead letters
        assert wait_gone(last.watch(), [], timeout=30) == []
        account(KILLS, previous, new_ids())
    finally:
        ok.close()
        letters.close()
        for cli in clis:
            cli.cleanup()
    elapsed = time.monotonic() - started
    missing = must_appear - seen
    assert not missing, f"{len(missing)} events never processed, e.g. {sorted(missing)[:3]}"
    assert seen <= set(drops)
    redone = [(k, stopped_by[k], redone_of.get(k, 0)) for k in sorted(stopped_by)]
    print(f"\n{KILLS} kills in {elapsed:.0f} s; (run, signal, its events redone later): "
          f"{redone}; SIGTERM before the handler: runs {early_sigterms}")  # fmt: skip
    assert redone_of.get(KILLS, 0) == 0, "nothing runs after the last run"
    for _run, stopped, count_again in redone:
        if stopped == "SIGTERM":
            assert count_again == 0, redone  # drained and committed: nothing to redo
        else:
            assert count_again <= WINDOW, redone  # only what was read and not committed
