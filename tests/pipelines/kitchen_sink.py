"""Every feature of the SDK in one pipeline, so the strict schema sees every field we emit."""

from __future__ import annotations

from typing import NamedTuple

import rtflow

IMAGE = "ghcr.io/acme/kitchen:1.0"


class Stats(NamedTuple):
    mean: float
    count: int
    ok: bool


@rtflow.stage(
    image=IMAGE,
    cpu="2",
    memory="1Gi",
    cpu_limit="4",
    memory_limit="2Gi",
    retry=rtflow.Retry(
        limit=5,
        policy="OnTransientError",
        backoff=rtflow.Backoff("500ms", factor=3, max_duration="1m"),
    ),
    timeout="90s",
    env={"LOG_LEVEL": "debug", "MODE": "fast"},
    secrets=[rtflow.Secret(env="API_TOKEN", secret="kitchen-api", key="token")],
    labels={"tier": "hot"},
    annotations={"kitchen.example.com/owner": "ml-platform"},
    service_account="kitchen-stats",
    description="Summary statistics of a batch.",
)
def stats(values: list[float], label: str = "batch") -> Stats:
    del label
    return Stats(sum(values) / len(values), len(values), True)


@rtflow.stage(image=IMAGE)
def shard_ids(count: int) -> list[str]:
    return [f"shard-{i}" for i in range(count)]


@rtflow.stage(image=IMAGE)
def process(shard: str, mean: float) -> dict:
    return {"shard": shard, "mean": mean}


@rtflow.stage(image=IMAGE)
def merge(parts: list[dict], strict: bool = True) -> str:
    return f"{len(parts)} parts (strict={strict})"


report = rtflow.container(
    "report",
    image="ghcr.io/acme/reporter:2.0",
    command=["/report"],
    args=["--summary", "{summary}", "--literal", "{{braces}}"],
    inputs={"summary": str, "channel": rtflow.Param(str, default="#ml", description="where")},
    outputs={"url": rtflow.Output(str, path="/tmp/out/url"), "bytes": int},
    timeout=60,
)

cleanup = rtflow.container(
    "cleanup",
    image="ghcr.io/acme/cleaner:1.0",
    args=["--status", "{status}", "--run", "{run}", "--took", "{took}"],
    inputs={"status": str, "run": str, "took": float},
)


@rtflow.pipeline(
    name="kitchen-sink",
    namespace="ml-pipelines",
    description="Exercise every SDK feature.",
    parallelism=4,
    latency_budget_ms=60_000,
    deadline=1800,
    ttl_after_success="30m",
    ttl_after_failure="2h",
    ttl_after_completion="24h",
    pod_gc="OnWorkflowSuccess",
    default_retry=rtflow.Retry(limit=2),
    labels={"team": "ml-platform"},
    annotations={"kitchen.example.com/ticket": "ML-42"},
    service_account="kitchen-runner",
)
def kitchen_sink(values: list[float], shards: int = 3, mode: str = "full") -> None:
    s = stats(values)
    ids = shard_ids(shards)
    with rtflow.when((s.mean > 0.5) & s.ok & (mode == "full")):
        parts = rtflow.for_each(ids, lambda shard: process(shard=shard, mean=s.mean))
        merged = merge(parts)
        gate = rtflow.approval(
            "release-gate", choices=("ship", "hold", "drop"), default="hold", after=[merged]
        )
        with rtflow.when(gate.approved | ~s.ok):
            report(summary=merged)
    with rtflow.when((s.count <= 0) | (mode != "full")):
        rtflow.for_each(["a", "b"], lambda shard: process(shard=shard, mean=0.0))
    with rtflow.on_exit():
        cleanup(
            status=rtflow.workflow.status, run=rtflow.workflow.uid, took=rtflow.workflow.duration
        )
