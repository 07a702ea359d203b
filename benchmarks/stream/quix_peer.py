"""The peer a user would pick instead: Quix Streams, exactly-once, the same hot path.

Runs in its own virtualenv (.tools/quix-venv: Quix Streams pins confluent-kafka < 2.12, rtflow
uses 2.16), so it cannot import rtflow or the example module; the feature and decision code
below is the example's ``compute_features`` and ``decide``, line for line. Quix processes one
message at a time, so Triton is called once per event, as a Quix user would.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from quixstreams import Application  # type: ignore[import-not-found]

FEATURES = ("log_amount", "foreign", "night", "card_not_present", "new_merchant")


def compute_features(transaction: dict[str, Any]) -> list[float]:
    hour = int(transaction.get("hour", 12))
    named = {
        "log_amount": math.log1p(float(transaction["amount"])),
        "foreign": float(transaction.get("country", "US") != transaction.get("card_country", "US")),
        "night": float(hour < 6 or hour >= 23),
        "card_not_present": float(transaction.get("channel") == "online"),
        "new_merchant": float(bool(transaction.get("first_time_merchant", False))),
    }
    return [named[name] for name in FEATURES]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--triton", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--commit-interval", type=float, default=0.01)
    args = parser.parse_args()
    triton = grpcclient.InferenceServerClient(args.triton)
    app = Application(
        broker_address=args.brokers,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval,
        auto_create_topics=False,
    )
    source = app.topic(args.source, value_deserializer="json")
    sink = app.topic(args.sink, value_serializer="json", key_serializer="str")

    def score(transaction: dict[str, Any]) -> dict[str, Any]:
        row = np.asarray([compute_features(transaction)], dtype=np.float32)
        request = grpcclient.InferInput("features", [1, 5], "FP32")
        request.set_data_from_numpy(row)
        risk = float(triton.infer("fraud-scorer", [request]).as_numpy("risk")[0][0])
        action = "review" if risk > 0.9 else "allow"
        return {"transaction_id": str(transaction.get("id", "")), "risk": risk, "action": action}

    frame = app.dataframe(source).apply(score)
    frame.to_topic(sink, key=lambda record: record["transaction_id"])
    app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
