"""Random bytes and random JSON through ``rtflow run --local`` against the real broker: the run
never crashes and every event is accounted for, exactly once: a result, a dead letter (with a
reason and its source), or a drop by the trigger's filter. A few hundred events per example, a
couple of examples, one broker (the session's) and a topic per example."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_faults_harness import ROOT, Cli, TopicReader, cli_env, produce, unique

from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

FILTERED = f"{ROOT / 'tests' / 'local_pipelines' / 'filtered.py'}:with_data_filters"
EVENTS = 300

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()  # NaN and infinities included: json.dumps writes NaN / Infinity
    | st.text(max_size=12)
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
near_valid = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(["buy", "sell.x", "refund", "BUY", ""]) | st.text(max_size=4),
        "amount": st.integers(min_value=-(10**400), max_value=10**400) | st.floats() | values,
        "vip": st.booleans() | values,
    },
    optional={"extra": values},
)


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


messages = st.one_of(
    st.binary(max_size=120),  # random bytes: mostly not JSON, sometimes not UTF-8
    values.map(lambda v: json.dumps(v).encode()),  # random JSON, any shape
    near_valid.map(lambda v: json.dumps(v).encode()),  # what the filter and stage look at
    st.integers(min_value=1, max_value=60_000).map(_nested),  # nested deeper than Python reads
)


@settings(
    max_examples=2,
    deadline=None,
    derandomize=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
)
@given(batch=st.lists(messages, min_size=EVENTS, max_size=EVENTS))
def test_random_messages_never_crash_the_run_and_every_event_is_accounted_for(
    kafka_broker: KafkaBroker, tmp_path: Path, batch: list[bytes]
) -> None:
    source, results, dead = unique("fuzz"), unique("fuzz-out"), unique("fuzz-dead")
    kafka_broker.create_topics(source, results, dead, partitions=2)
    produce(kafka_broker, source, [(str(i).encode(), m) for i, m in enumerate(batch)])
    args = [
        "--kafka-topic", source, "--kafka-brokers", kafka_broker.bootstrap_servers,
        "--kafka-group", unique("fuzz"), "--max-events", str(EVENTS), "--idle-timeout", "20",
        "--output-topic", results, "--dead-letter-topic", dead, "--no-progress",
    ]  # fmt: skip
    log = tmp_path / f"{source}.log"
    cli = Cli(FILTERED, args, cli_env(kafka_broker), log).start()
    try:
        code = cli.wait(180)
    finally:
        cli.cleanup()
    output = cli.output()
    assert code in (0, 1), output[-3000:]  # 1: some events failed, as they should
    assert "Traceback" not in output, output[-3000:]
    summary = re.search(r"(\d+) events in .*?: (\d+) succeeded, (\d+) failed", output)
    assert summary is not None, output[-3000:]
    dropped = re.search(r"(\d+) dropped by the trigger's filter", output)
    filtered = int(dropped.group(1)) if dropped else 0
    readers = [TopicReader(kafka_broker, results), TopicReader(kafka_broker, dead)]
    try:
        ok, letters = (reader.catch_up() for reader in readers)
    finally:
        for reader in readers:
            reader.close()
    ok_ids = [json.loads(m.value())["event"] for m in ok]
    letter_records: list[dict[str, Any]] = [json.loads(m.value()) for m in letters]
    dead_ids = [r["event"] for r in letter_records]
    assert len(set(ok_ids)) == len(ok_ids) and len(set(dead_ids)) == len(dead_ids)
    assert not set(ok_ids) & set(dead_ids)
    assert len(ok_ids) + len(dead_ids) + filtered == EVENTS == int(summary.group(1))
    assert int(summary.group(2)) == len(ok_ids) and int(summary.group(3)) == len(dead_ids)
    for record, message in zip(letter_records, letters, strict=True):
        assert record["reason"], record
        _, partition, offset = record["event"].rsplit("/", 2)
        assert record["source"] == {"topic": source, "partition": int(partition),
                                    "offset": int(offset)}  # fmt: skip
        assert dict(message.headers())["rtflow-reason"]
        assert "local executor error" not in record["reason"], record["reason"]  # no bugs
