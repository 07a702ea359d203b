"""The fraud hot path as the stream benchmark runs it: the example's own stage functions and
Triton model (decode -> features -> score -> decision -> publish), no review branch, topics
named by ``$RTFLOW_BENCH_TOPICS`` so each measured point starts from empty topics."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if str(EXAMPLES) not in sys.path:
    sys.path.insert(0, str(EXAMPLES))

from fraud_detection import compute_features, decide, publish  # noqa: E402
from models.fraud_scorer import FRAUD_SCORER, SERVER  # noqa: E402

import rtflow  # noqa: E402

SUFFIX = os.environ.get("RTFLOW_BENCH_TOPICS", "")
SOURCE = f"transactions{SUFFIX}"
DECISIONS = f"decisions{SUFFIX}"

transactions = rtflow.kafka(
    SOURCE,
    brokers=["kafka.invalid:9092"],
    consumer_group=f"fraud{SUFFIX}",
    inputs={"transaction": "body"},
    delivery=rtflow.Delivery(dead_letter=rtflow.DeadLetter(f"dead-letter{SUFFIX}")),
)


def _optional_int(name: str) -> int | None:
    return int(os.environ[name]) if os.environ.get(name) else None


# RTFLOW_BENCH_CACHE=N: the worker keeps N answers of the scorer for repeated requests
# (triton_model(client_cache=N)); measured with stream_fraud.py --repeated.
CACHE = _optional_int("RTFLOW_BENCH_CACHE") or 0
if CACHE:
    SCORER = dataclasses.replace(FRAUD_SCORER, client_cache=CACHE)
    SERVER = dataclasses.replace(
        SERVER, models=tuple(SCORER if m.name == SCORER.name else m for m in SERVER.models)
    )
else:
    SCORER = FRAUD_SCORER


@rtflow.pipeline(
    name="fraud-bench",
    latency_budget_ms=35,
    triggers=[transactions],
    stream=rtflow.Stream(
        guarantee=os.environ.get("RTFLOW_BENCH_GUARANTEE", "exactly_once"),
        partitions=int(os.environ.get("RTFLOW_BENCH_PARTITIONS", "4")),
        # None: derived from the latency budget (8 ms and 4 ms at 35 ms); set them to measure
        # the trade-off (stream_fraud.py --variant RTFLOW_BENCH_INTERVAL=1, say).
        transaction_interval_ms=_optional_int("RTFLOW_BENCH_INTERVAL"),
        max_wait_ms=_optional_int("RTFLOW_BENCH_MAX_WAIT"),
        inference_in_flight=_optional_int("RTFLOW_BENCH_IN_FLIGHT") or 1,
        batches_in_flight=_optional_int("RTFLOW_BENCH_BATCHES") or 1,
    ),
)
def fraud_bench(transaction: dict[str, Any]) -> None:
    features = compute_features(transaction)
    scored = rtflow.infer(SERVER, SCORER, {"features": features}, name="score", timeout="2s")
    decision = decide(scored, transaction)
    publish(topic=DECISIONS, payload=decision.record, key_field="transaction_id")
