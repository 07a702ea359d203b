"""The stream benchmark's measuring chain, each end a process of its own: the load generator
(offers a fixed rate; each key carries its send time) and the reader (``read_committed``;
latency from send to visible, per second the worst, duplicates). Started by
benchmarks/stream_fraud.py as ``python measuring_chain.py generate|read ...``; their cost is
inside every figure it reports."""

from __future__ import annotations

import gc
import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STALL_MS = 150.0  # a second of sending whose worst latency is above this is reported


HOT = 1000  # with --repeated: the transactions a repeated event is drawn from


def generate(
    brokers: str, topic: str, rate: float, seconds: float, repeated: float | None = None
) -> int:
    """Offer ``rate`` events/s for ``seconds``; each key is ``<seq>.<send time in µs>``.

    ``repeated`` (a fraction from 0 to 1): that share of events repeats one of ``HOT``
    transactions (the same model inputs, so a cache can answer them), drawn at random; every
    other event is a transaction seen once (its amount made unique from its sequence number).
    Without it, the events cycle through 2,000 transactions, as the benchmark always did."""
    sys.path.insert(0, str(ROOT / "examples" / "models"))
    import random

    import fraud_events  # type: ignore[import-not-found]
    from confluent_kafka import Producer

    rng = random.Random(3)
    templates = []
    for index in range(2000):
        body = fraud_events.transaction(rng, index)
        body.pop("id")
        templates.append(json.dumps(body, separators=(",", ":")).encode()[1:])
    body = _bodies(templates, repeated)
    producer = Producer(
        {"bootstrap.servers": brokers, "linger.ms": 5, "enable.idempotence": True,
         "queue.buffering.max.messages": 1_000_000}
    )  # fmt: skip
    start = time.monotonic()
    sent = 0
    while True:
        elapsed = time.monotonic() - start
        if elapsed >= seconds:
            break
        due = int(elapsed * rate)
        while sent < due:
            key = f"{sent}.{time.time_ns() // 1000}".encode()
            value = b'{"id":"' + key + b'",' + body(sent)
            try:
                producer.produce(topic, value, key=key)
            except BufferError:
                producer.poll(0.001)
                continue
            sent += 1
        producer.poll(0)
        time.sleep(0.0005)
    producer.flush(30)
    print(json.dumps({"sent": sent}))
    return 0


def _bodies(templates: list[bytes], repeated: float | None) -> Callable[[int], bytes]:
    """The event body (after its id) for sequence number ``n``."""
    if repeated is None:
        return lambda n: templates[n % 2000]
    if not 0.0 <= repeated <= 1.0:
        raise SystemExit(f"--repeated {repeated} is not a fraction from 0 to 1")
    import random

    draw = random.Random(5)
    hot = templates[:HOT]
    # each template split around its amount, so a fresh event gets an amount of its own
    split = [t.split(b'"amount":', 1) for t in templates]
    parts = [(a + b'"amount":', b[b.index(b",") :]) for a, b in split]

    def body(n: int) -> bytes:
        if draw.random() < repeated:
            return hot[draw.randrange(HOT)]
        head, tail = parts[n % len(parts)]
        return head + str(1.0 + n).encode() + tail

    return body


def read(
    brokers: str, topic: str, seconds: float, warmup: float, tail: float, min_bytes: int = 65536
) -> int:
    """Read decisions ``read_committed``; latency of events sent inside the measured window."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {"bootstrap.servers": brokers, "group.id": f"reader-{secrets.token_hex(4)}",
         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
         "enable.auto.commit": False,
         # Efficient, as a real downstream consumer is: with fetch.min.bytes=1 a reader at
         # these rates makes the broker answer thousands of tiny fetches a second, and that
         # CPU is taken from the system under test. Adds at most 5 ms to what is measured.
         "fetch.min.bytes": min_bytes, "fetch.wait.max.ms": 5}
    )  # fmt: skip
    consumer.subscribe([topic])
    started_us = time.time_ns() // 1000
    window = (started_us + int(warmup * 1e6), started_us + int((seconds - tail) * 1e6))
    latencies: list[float] = []
    worst: dict[int, float] = {}
    seen: set[bytes] = set()
    duplicates = 0
    total = 0
    drained = 0  # outputs that arrived inside the window, whenever their input was sent
    deadline = time.monotonic() + seconds + 3.0  # time for the last events to come out
    while time.monotonic() < deadline:
        # consume(n, timeout) waits for n messages OR the timeout: a long timeout here would
        # be measured as latency of the system under test.
        for msg in consumer.consume(1000, 0.001):
            if msg.error() is not None:
                continue
            now_us = time.time_ns() // 1000
            key = msg.key() or b""
            total += 1
            if window[0] <= now_us < window[1]:
                drained += 1
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            sent_us = int(key.split(b".")[1])
            if window[0] <= sent_us < window[1]:
                latency = (now_us - sent_us) / 1000.0
                latencies.append(latency)
                # The worst latency of each second of sending: where in the window a tail is.
                second = (sent_us - started_us) // 1_000_000
                worst[second] = max(worst.get(second, 0.0), latency)
    consumer.close()
    stalls = {s: round(v) for s, v in sorted(worst.items()) if v > STALL_MS}
    print(json.dumps({"total": total, "duplicates": duplicates, "latencies": latencies,
                      "drained": drained, "stalls": stalls, "stall_ms": STALL_MS, "started_us": started_us,
                      "window_seconds": (window[1] - window[0]) / 1e6}))  # fmt: skip
    return 0


def main(args: list[str]) -> int:
    # Neither end runs long nor makes reference cycles, and a collection pausing the reader is
    # latency charged to the system under test: the cyclic collector stays off in both.
    gc.disable()
    if args[0] == "generate":
        repeated = float(args[5]) if len(args) > 5 else None
        return generate(args[1], args[2], float(args[3]), float(args[4]), repeated)
    return read(args[1], args[2], float(args[3]), float(args[4]), float(args[5]), int(args[6]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
