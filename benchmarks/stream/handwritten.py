"""The baseline a user would write by hand: confluent-kafka + tritonclient, no rtflow.

A straightforward loop over the same stage functions: consume a batch, decode, features, one
Triton request for the batch, decide, produce; at-least-once commits offsets every interval,
``--transactions`` wraps each interval in a Kafka transaction (serially: the loop waits for the
commit). ``--passthrough`` copies each transaction to the sink unchanged, keyed as it came, with
no stage and no Triton: the floor of such a loop on this machine. Run by
benchmarks/stream_fraud.py.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import numpy as np
import tritonclient.grpc as grpcclient
from confluent_kafka import Consumer, Producer, TopicPartition
from fraud_detection import compute_features, decide

STOP = False


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--brokers", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--triton", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--transactions", action="store_true")
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--passthrough", action="store_true")
    args = parser.parse_args()

    def stop(*_: Any) -> None:
        global STOP
        STOP = True

    signal.signal(signal.SIGTERM, stop)
    consumer = Consumer(
        {
            "bootstrap.servers": args.brokers,
            "group.id": args.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "fetch.wait.max.ms": 5,
        }
    )
    settings: dict[str, Any] = {"bootstrap.servers": args.brokers, "linger.ms": 1}
    if args.transactions:
        settings["transactional.id"] = f"{args.group}-handwritten"
    else:
        settings["enable.idempotence"] = True
    producer = Producer(settings)
    if args.transactions:
        producer.init_transactions(30)
    triton = grpcclient.InferenceServerClient(args.triton)
    consumer.subscribe([args.source])
    offsets: dict[tuple[str, int], int] = {}
    last_commit = time.monotonic()
    in_txn = False
    while not STOP:
        messages = [m for m in consumer.consume(1000, 0.005) if m.error() is None]
        if messages and args.passthrough:
            if args.transactions and not in_txn:
                producer.begin_transaction()
                in_txn = True
            for m in messages:
                while True:
                    try:
                        producer.produce(args.sink, m.value(), key=m.key())
                        break
                    except BufferError:
                        producer.poll(0.005)
            producer.poll(0)
        elif messages:
            transactions = [json.loads(m.value() or b"") for m in messages]
            rows = [compute_features(t) for t in transactions]
            risks: list[float] = []
            for start in range(0, len(rows), args.batch):
                part = np.asarray(rows[start : start + args.batch], dtype=np.float32)
                request = grpcclient.InferInput("features", list(part.shape), "FP32")
                request.set_data_from_numpy(part)
                result = triton.infer("fraud-scorer", [request])
                risks.extend(float(r[0]) for r in result.as_numpy("risk"))
            if args.transactions and not in_txn:
                producer.begin_transaction()
                in_txn = True
            for transaction, risk in zip(transactions, risks, strict=True):
                scored = {"outputs": [{"name": "risk", "data": [risk]}]}
                record = decide(scored, transaction).record
                value = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
                while True:
                    try:
                        producer.produce(args.sink, value, key=record["transaction_id"].encode())
                        break
                    except BufferError:
                        producer.poll(0.005)
            producer.poll(0)
        for m in messages:
            offsets[(str(m.topic()), int(m.partition() or 0))] = int(m.offset() or 0) + 1
        if offsets and (time.monotonic() - last_commit) * 1000 >= args.interval_ms:
            positions = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
            if args.transactions:
                producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata())
                producer.commit_transaction()
                in_txn = False
            else:
                producer.flush()
                consumer.commit(offsets=positions, asynchronous=True)
            offsets = {}
            last_commit = time.monotonic()
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
