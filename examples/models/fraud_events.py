"""Sample card transactions for the fraud example: deterministic, a realistic mix.

    python examples/models/fraud_events.py --count 1000 --seed 7 > events.jsonl

``examples/local/fraud_events.jsonl`` is ``--count 200 --valid-only`` (a test keeps it current).

Most transactions are small domestic purchases (low risk); a few percent look like card fraud
(large, foreign, at night, online, at a new merchant) and score above the review threshold;
a few are invalid (no amount, an amount that is not a number, not JSON at all) and must end in
the dead-letter output. Every valid transaction carries an ``id``, also used as the Kafka key.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

COUNTRIES = ("US", "US", "US", "US", "GB", "DE", "FR", "BR", "NG", "IN")
INVALID_RATE = 0.03
FRAUD_RATE = 0.06


def transaction(rng: random.Random, index: int) -> dict[str, Any]:
    """One valid transaction; about FRAUD_RATE of them have the fraud profile."""
    card_country = rng.choice(("US", "US", "US", "GB", "DE"))
    if rng.random() < FRAUD_RATE:
        return {
            "id": f"tx-{index:06d}",
            "type": rng.choice(("purchase", "cash_withdrawal")),
            "amount": round(rng.uniform(1500, 9000), 2),
            "country": rng.choice([c for c in COUNTRIES if c != card_country]),
            "card_country": card_country,
            "channel": "online",
            "hour": rng.choice((0, 1, 2, 3, 4, 5, 23)),
            "first_time_merchant": True,
        }
    foreign = rng.random() < 0.1
    return {
        "id": f"tx-{index:06d}",
        "type": rng.choice(("purchase", "purchase", "purchase", "cash_withdrawal")),
        "amount": round(rng.lognormvariate(3.5, 1.0), 2),
        "country": rng.choice([c for c in COUNTRIES if c != card_country])
        if foreign
        else card_country,
        "card_country": card_country,
        "channel": rng.choice(("pos", "pos", "online")),
        "hour": rng.randrange(24),
        "first_time_merchant": rng.random() < 0.15,
    }


def events(count: int, seed: int = 7, *, valid_only: bool = False) -> list[tuple[str, bytes]]:
    """``count`` (key, message) pairs; the same seed gives the same bytes. ``valid_only``: no
    invalid transactions (the example's shipped events file, a run that exits 0)."""
    rng = random.Random(seed)
    out: list[tuple[str, bytes]] = []
    for index in range(count):
        key = f"tx-{index:06d}"
        if rng.random() < INVALID_RATE and not valid_only:
            kind = rng.choice(("no-amount", "bad-amount", "not-json"))
            if kind == "not-json":
                out.append((key, f"{{id: {key}, amount: ".encode()))
                continue
            body = transaction(rng, index)
            if kind == "no-amount":
                del body["amount"]
            else:
                body["amount"] = "twelve dollars"
            out.append((key, json.dumps(body, sort_keys=True).encode()))
            continue
        out.append((key, json.dumps(transaction(rng, index), sort_keys=True).encode()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--valid-only", action="store_true", help="no invalid transactions (nothing to dead-letter)"
    )
    args = parser.parse_args(argv)
    for _, message in events(args.count, args.seed, valid_only=args.valid_only):
        sys.stdout.write(message.decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
