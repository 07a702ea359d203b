"""The fraud example end to end on this machine: 1,000 sample events from a real Kafka topic,
scored by a real Triton that ``rtflow run --local`` starts from the example's model declaration,
results and dead letters to two more topics; every event accounted for by its key."""

from __future__ import annotations

import json
import math
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from local_pipelines import fraud_stand_ins

from rtflow.gpu import triton_server as ts
from rtflow.stages.local import main
from rtflow.testing.kafka_broker import KafkaBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))
from models import fraud_events  # noqa: E402
from models.fraud_scorer import BIAS, FEATURES, WEIGHTS  # noqa: E402

COUNT = 1000


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def expected_features(t: dict[str, Any]) -> list[float]:
    hour = int(t.get("hour", 12))
    named = {
        "log_amount": math.log1p(float(t["amount"])),
        "foreign": float(t.get("country", "US") != t.get("card_country", "US")),
        "night": float(hour < 6 or hour >= 23),
        "card_not_present": float(t.get("channel") == "online"),
        "new_merchant": float(bool(t.get("first_time_merchant", False))),
    }
    return [named[n] for n in FEATURES]


def expected_risk(features: list[float]) -> float:
    """The scorer's logistic regression on the float32 values Triton receives."""
    z = BIAS + sum(w * f32(x) for w, x in zip(WEIGHTS, features, strict=True))
    return f32(1.0 / (1.0 + math.exp(-z)))


def consume_all(broker: KafkaBroker, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": broker.bootstrap_servers,
            "group.id": f"check-{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    found: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5 if len(found) < expected else 1.5)
            if msg is None:
                if len(found) >= expected:
                    break
                continue
            if msg.error() is None:
                found.append(msg)
    finally:
        consumer.close()
    return found


def kafka_broker_topics(broker: KafkaBroker) -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    return set(admin.list_topics(timeout=10).topics)


def test_fraud_example_over_1000_events_with_real_kafka_and_triton(
    kafka_broker: KafkaBroker,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))
    suffix = uuid.uuid4().hex[:8]
    source, results, dead = f"tx-{suffix}", f"decisions-{suffix}", f"tx-dead-{suffix}"
    kafka_broker.create_topics(source, results, dead, partitions=2)
    if "fraud-decisions" not in kafka_broker_topics(kafka_broker):
        kafka_broker.create_topics("fraud-decisions", partitions=2)
    # The example's publish-decision is the built-in Kafka publish stage: in the cluster its
    # brokers and SASL/TLS come from its env= and Secrets; here --stage-env points it at this
    # broker (this process's $KAFKA_BROKERS) without TLS or SASL.
    monkeypatch.setenv("KAFKA_BROKERS", kafka_broker.bootstrap_servers)
    samples = fraud_events.events(COUNT, seed=7)
    assert samples == fraud_events.events(COUNT, seed=7)  # deterministic
    from rtflow.stages.kafka_io import producer

    p = producer(kafka_broker.bootstrap_servers)
    for key, message in samples:
        p.produce(source, value=message, key=key.encode())
    assert p.flush(30) == 0
    by_key = dict(samples)
    # the input topic's (partition, offset) of every key: how results name their event
    key_of = {
        f"{source}/{m.partition()}/{m.offset()}": m.key().decode()
        for m in consume_all(kafka_broker, source, COUNT)
    }
    assert sorted(key_of.values()) == sorted(by_key)

    stand = "local_pipelines.fraud_stand_ins"
    started = time.monotonic()
    code = main(
        [
            str(EXAMPLES / "fraud_detection.py"),
            "--plane",  # the example also declares a stream plane; this test is the workflow one
            "workflow",
            "--kafka-topic",
            source,
            "--kafka-brokers",
            kafka_broker.bootstrap_servers,
            "--max-events",
            str(COUNT),
            "--output-topic",
            results,
            "--dead-letter-topic",
            dead,
            "--auto-approve",
            "--max-in-flight",
            "16",
            "--no-progress",
            "--log-dir",
            str(tmp_path / "logs"),
            "--stand-in",
            f"block-card={stand}:block_card",
            "--stand-in",
            f"notify-on-call={stand}:notify_on_call",
            # the stage's own env= names the production brokers (SASL_SSL); here: this broker
            "--stage-env",
            "publish-decision:KAFKA_BROKERS",
            "--stage-env",
            "publish-decision:KAFKA_SECURITY_PROTOCOL",
            "--stage-env",
            "publish-decision:KAFKA_SASL_MECHANISM",
        ]
    )
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 1, err  # the invalid events failed, and the run says so
    ok = {m.key().decode(): json.loads(m.value()) for m in consume_all(kafka_broker, results, 1)}
    letters = {m.key().decode(): json.loads(m.value()) for m in consume_all(kafka_broker, dead, 1)}
    # every input event accounted for, once, by its key
    ok_keys = {key_of[e] for e in ok}
    dead_keys = {key_of[e] for e in letters}
    # The trigger's filter (type in purchase/cash_withdrawal and amount > 0) drops what the
    # Sensor would drop: the samples whose amount is missing or not a number. Messages that are
    # not JSON never reach the filter: they are dead letters, each with its reason.
    not_json, filtered = set(), set()
    for key, message in samples:
        try:
            body = json.loads(message)
        except ValueError:
            not_json.add(key)
            continue
        if not isinstance(body.get("amount"), (int, float)) or body["amount"] <= 0:
            filtered.add(key)
    assert dead_keys == not_json and len(not_json) > 3 and len(filtered) > 5
    assert len(ok) + len(letters) + len(filtered) == COUNT
    assert ok_keys | dead_keys | filtered == set(by_key)
    assert not ok_keys & dead_keys and not ok_keys & filtered
    assert f"{len(filtered)} dropped by the trigger's filter" in err
    for letter in letters.values():
        assert letter["reason"].startswith(("the message is not JSON", "task compute-features"))
    # the scores are the model's math on the example's features
    reviewed = 0
    for event, record in ok.items():
        transaction = json.loads(by_key[key_of[event]])
        features = record["outputs"]["compute-features"]["result"]
        assert features == pytest.approx(expected_features(transaction), rel=1e-12)
        risk = record["outputs"]["decide"]["risk"]
        assert risk == pytest.approx(expected_risk(features), rel=1e-6, abs=1e-7)
        assert record["outputs"]["decide"]["action"] == ("review" if risk > 0.9 else "allow")
        if risk > 0.9:
            reviewed += 1
            assert "analyst-approval" in record["outputs"]
            assert record["outputs"]["summarize"]["result"].startswith(f"risk {risk:.3f}; ")
        else:
            assert {"review", "summarize", "analyst-approval"} <= set(record["skipped"])
    assert 20 < reviewed < 150, reviewed  # some scores go above the review threshold
    assert len(fraud_stand_ins.CALLS["block"]) == reviewed  # auto-approved: every one blocked
    assert len(fraud_stand_ins.CALLS["notify"]) == len(ok)  # one exit handler per run
    # every decision was published by the built-in stage, keyed by the transaction id
    ok_ids = {json.loads(by_key[key_of[e]])["id"]: record for e, record in ok.items()}
    published = [
        m
        for m in consume_all(kafka_broker, "fraud-decisions", len(ok))
        if m.key().decode() in ok_ids
    ]
    decisions = {m.key().decode(): json.loads(m.value()) for m in published}
    assert len(decisions) == len(ok)
    for transaction_id, record in ok_ids.items():
        assert decisions[transaction_id]["risk"] == record["outputs"]["decide"]["risk"]
    assert dict(published[0].headers() or [])["traceparent"].startswith(b"00-")
    # the summary and the per-stage timing table
    assert "inference: local Triton at http://127.0.0.1:" in err
    assert f"{COUNT} events in" in err and f"{len(ok)} succeeded" in err
    table = {line.split()[0]: line.split() for line in err.splitlines() if line[:1].isalpha()}
    assert "stage" in table and "score" in table and "compute-features" in table
    assert int(table["score"][1]) >= len(ok)
    print(f"\n{COUNT} events in {elapsed:.1f} s (with Triton start)\n{err}")
