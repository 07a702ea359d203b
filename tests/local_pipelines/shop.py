"""Orders: parse, score, branch on the score, fan out over items, approve, notify at exit.

State that must outlive one worker process (attempt counters) lives in files under
``$RTFLOW_TEST_STATE``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import rtflow
from rtflow.stages.runtime import BadInput

IMAGE = "ghcr.io/acme/shop:1.0"


class Parsed(NamedTuple):
    amount: float
    kind: str
    items: list[str]


@rtflow.stage(image=IMAGE)
def parse(order: dict[str, Any]) -> Parsed:
    if "amount" not in order:
        raise BadInput("the order has no amount")
    return Parsed(float(order["amount"]), str(order.get("kind", "normal")), order.get("items", []))


@rtflow.stage(image=IMAGE)
def score(amount: float, kind: str) -> float:
    if kind == "explode":
        raise RuntimeError("scoring exploded")
    if kind == "slow":
        time.sleep(5)
    return round(min(amount / 1000.0, 1.0), 4)


@rtflow.stage(image=IMAGE)
def price(item: str) -> dict[str, Any]:
    return {"item": item, "cents": len(item) * 100}


@rtflow.stage(image=IMAGE)
def total(prices: list[dict[str, Any]]) -> int:
    return sum(int(p["cents"]) for p in prices)


@rtflow.stage(image=IMAGE)
def ship(amount: float, kind: str) -> str:
    return f"shipped {kind} {amount:g}"


@rtflow.stage(image=IMAGE)
def audit(status: str, name: str, uid: str, took: float) -> str:
    state = os.environ.get("RTFLOW_TEST_STATE")
    if state:
        (Path(state) / f"audit-{uid}").write_text(f"{status} {name} {took}")
    return status


@rtflow.pipeline(name="shop", namespace="shop")
def shop(order: dict[str, Any], threshold: float = 0.5) -> None:
    parsed = parse(order)
    risk = score(amount=parsed.amount, kind=parsed.kind)
    with rtflow.when(risk > threshold):
        prices = rtflow.for_each(parsed.items, lambda i: price(item=i))
        total(prices)
        gate = rtflow.approval("manager", after=[prices])
        with rtflow.when(gate.approved):
            ship(amount=parsed.amount, kind=parsed.kind)
    with rtflow.when(parsed.kind == "gift"):
        ship(amount=0.0, kind="gift-wrap")
    with rtflow.on_exit():
        audit(
            status=rtflow.workflow.status,
            name=rtflow.workflow.name,
            uid=rtflow.workflow.uid,
            took=rtflow.workflow.duration,
        )


# -- retries and deadlines ------------------------------------------------------------------------


def _attempt(key: str) -> int:
    """How many times ``key`` was tried so far, this one included."""
    marker = Path(os.environ["RTFLOW_TEST_STATE"]) / f"attempts-{key}"
    count = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(count))
    return count


@rtflow.stage(
    image=IMAGE,
    retry=rtflow.Retry(limit=3, policy="Always", backoff=rtflow.Backoff("1s", factor=2)),
)
def flaky(key: str, failures: int) -> int:
    """Fails the first ``failures`` attempts; a negative count is a bad input."""
    attempt = _attempt(key)
    if failures < 0:
        raise BadInput("failures must not be negative")
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} of {key} failed")
    return attempt


@rtflow.stage(image=IMAGE, timeout="1s", retry=rtflow.Retry(limit=1, policy="OnFailure"))
def sleepy(seconds: float, key: str) -> str:
    _attempt(f"{key}-nap")
    time.sleep(seconds)
    return "awake"


@rtflow.pipeline(name="retrying", namespace="shop")
def retrying(key: str, failures: int = 0, nap: float = 0.0) -> None:
    n = flaky(key=key, failures=failures)
    sleepy(seconds=nap, key=key).after(n)


# -- a container stage ----------------------------------------------------------------------------

publish = rtflow.container(
    "publish",
    image="ghcr.io/acme/publisher:1.0",
    args=["--value", "{value}"],
    inputs={"value": float},
    outputs={"receipt": str},
)


@rtflow.pipeline(name="with-container", namespace="shop")
def with_container(amount: float) -> None:
    risk = score(amount=amount, kind="normal")
    publish(value=risk)
