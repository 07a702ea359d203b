"""Benchmark ``rtflow run --local``: events/s and per-event latency beside the direct-call floor.

    python benchmarks/local_run.py [--events 2000] [--write]

A 4-stage function pipeline (validate -> features -> score -> route) over N synthetic card
transactions, three ways in the same run:

* floor: the same four functions called directly in one Python loop (no encoding, no processes);
* local, 1 in flight: the local executor with one event at a time (pure per-event latency);
* local, 8 in flight, 2 workers per stage: throughput.

It also splits the runtime's cost per stage invocation: the worker round trip seen by the caller
minus the time inside ``Prepared.invoke`` (pipes, JSON framing, thread hand-off), and the decode/
encode share inside the worker (``Prepared.invoke`` minus the bare function call).

``--write`` replaces the ``## Local run`` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import rtflow

ROOT = Path(__file__).resolve().parents[1]
IMAGE = "ghcr.io/acme/bench:1.0"
WEIGHTS = {"log_amount": 0.9, "foreign": 1.4, "night": 0.8, "online": 1.1}


class Decision(NamedTuple):
    risk: float
    action: str


@rtflow.stage(image=IMAGE)
def validate(transaction: dict[str, Any]) -> dict[str, Any]:
    if float(transaction["amount"]) <= 0:
        raise ValueError("amount must be positive")
    return {k: transaction[k] for k in ("amount", "country", "card_country", "hour", "channel")}


@rtflow.stage(image=IMAGE)
def features(transaction: dict[str, Any]) -> dict[str, float]:
    hour = int(transaction["hour"])
    return {
        "log_amount": math.log1p(float(transaction["amount"])),
        "foreign": float(transaction["country"] != transaction["card_country"]),
        "night": float(hour < 6 or hour >= 23),
        "online": float(transaction["channel"] == "online"),
    }


@rtflow.stage(image=IMAGE)
def score(features: dict[str, float]) -> Decision:
    z = -7.0 + sum(w * float(features[k]) for k, w in WEIGHTS.items())
    risk = 1.0 / (1.0 + math.exp(-z))
    return Decision(round(risk, 6), "review" if risk > 0.9 else "allow")


@rtflow.stage(image=IMAGE)
def route(risk: float, action: str) -> str:
    return f"{action}:{risk:.3f}"


@rtflow.pipeline(name="bench-local")
def bench(transaction: dict[str, Any]) -> None:
    v = validate(transaction)
    d = score(features(v))
    route(risk=d.risk, action=d.action)


def transactions(n: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    return [
        {
            "transaction": {
                "amount": round(rng.uniform(1, 5000), 2),
                "country": rng.choice(["US", "US", "US", "DE", "BR"]),
                "card_country": "US",
                "hour": rng.randrange(24),
                "channel": rng.choice(["online", "pos"]),
            }
        }
        for _ in range(n)
    ]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def floor(events: list[dict[str, Any]]) -> dict[str, float]:
    # the decorated names are StageDefs at run time; .function is the plain function
    v_fn, f_fn, s_fn, r_fn = (getattr(f, "function") for f in (validate, features, score, route))  # noqa: B009
    latencies = []
    started = time.perf_counter()
    for event in events:
        t0 = time.perf_counter()
        d = s_fn(f_fn(v_fn(event["transaction"])))
        r_fn(d.risk, d.action)
        latencies.append((time.perf_counter() - t0) * 1000)
    wall = time.perf_counter() - started
    return {"eps": len(events) / wall, "p50": pct(latencies, 50), "p99": pct(latencies, 99)}


def local(events: list[dict[str, Any]], in_flight: int, workers: int) -> dict[str, Any]:
    from rtflow.stages.events import ListSource, MemorySink
    from rtflow.stages.local import run_local

    pipeline = bench.build()
    # warm up the workers and the import caches, then measure a fresh run
    run_local(pipeline, ListSource(events[:50]), output=MemorySink(), dead_letter=MemorySink())
    out = MemorySink()
    summary = run_local(
        pipeline,
        ListSource(events),
        output=out,
        dead_letter=MemorySink(),
        max_in_flight=in_flight,
        workers=workers,
    )
    assert summary.failed == 0 and len(out.records) == len(events)
    # the executor's own latency excludes its start-up; events/s over the whole event loop
    return {
        "eps": summary.events_per_second,
        "p50": summary.latency_p50_ms,
        "p99": summary.latency_p99_ms,
        "stages": summary.stages,
    }


def invoke_split(calls: int = 3000) -> dict[str, float]:
    """Inside the worker: decode + call + encode, against the bare call, for the score stage."""
    from rtflow.stages.runtime import Prepared

    prepared = Prepared(score.function)  # type: ignore[attr-defined]
    raw = {"features": '{"foreign":0.0,"log_amount":6.2,"night":1.0,"online":1.0}'}
    value = {"foreign": 0.0, "log_amount": 6.2, "night": 1.0, "online": 1.0}
    bare, full = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        score.function(value)  # type: ignore[attr-defined]
        t1 = time.perf_counter()
        prepared.invoke(raw)
        t2 = time.perf_counter()
        bare.append((t1 - t0) * 1000)
        full.append((t2 - t1) * 1000)
    return {"bare_p50": pct(bare, 50), "invoke_p50": pct(full, 50), "invoke_p99": pct(full, 99)}


def round_trip(calls: int = 3000) -> dict[str, float]:
    """The bare worker round trip (pipes + JSON framing), one caller, no executor."""
    from rtflow.stages.workers import WorkerPool

    with WorkerPool(f"{__name__}:route") as pool:
        for _ in range(100):
            pool.call({"risk": "0.5", "action": "allow"})
        results = [pool.call({"risk": "0.5", "action": "allow"}) for _ in range(calls)]
    rt = [r.ms for r in results]
    over = [r.overhead_ms for r in results]
    return {
        "rt_p50": pct(rt, 50),
        "rt_p99": pct(rt, 99),
        "over_p50": pct(over, 50),
        "over_p99": pct(over, 99),
    }


# The fraud example with real Triton scoring -------------------------------------------------


def fraud_publish(
    topic: str, payload: dict[str, Any], key_field: str = "", **_: Any
) -> dict[str, Any]:
    """Stand-in for the Kafka publish stage (no broker in this benchmark); costs nothing."""
    del topic, payload, key_field
    return {"partition": 0, "offset": 0, "traceparent": ""}


def fraud_block(reason: str) -> None:
    del reason


def fraud_notify(status: str, workflow: str) -> None:
    del status, workflow


def fraud(count: int) -> dict[str, Any]:
    """The fraud example on a real local Triton: the local executor beside its floor, the same
    stage functions and the same Triton request (the compiled http body) in one Python loop."""
    import http.client
    import tempfile
    from urllib.parse import urlsplit

    from rtflow.generators.compiler import compile_pipelines
    from rtflow.gpu.triton_server import TritonServer
    from rtflow.loader import load_pipelines
    from rtflow.stages.events import ListSource, MemorySink
    from rtflow.stages.local import auto_approve, run_local

    _, (definition,) = load_pipelines(str(ROOT / "examples" / "fraud_detection.py"))
    import fraud_detection as fd  # loaded by load_pipelines
    from models import fraud_events, fraud_scorer

    pipeline = definition.build()
    valid = []
    for _, message in fraud_events.events(count, seed=11):
        try:
            t = json.loads(message)
        except ValueError:
            continue  # the samples' deliberately broken events: the dead-letter path, not timed
        if isinstance(t, dict) and isinstance(t.get("amount"), (int, float)):
            valid.append(t)
    (template,) = [
        m.body for m in compile_pipelines([pipeline]).manifests if m.kind == "WorkflowTemplate"
    ]
    (step,) = [t for t in template["spec"]["templates"] if t["name"] == "score"]
    body, path = step["http"]["body"], urlsplit(step["http"]["url"]).path
    with tempfile.TemporaryDirectory() as repo:
        fraud_scorer.write_local_repository(repo)
        with TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0) as server:
            host = urlsplit(server.http_url)
            connection = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port)

            def direct(t: dict[str, Any]) -> None:
                features = fd.compute_features(t)
                payload = body.replace("{{inputs.parameters.features}}", json.dumps(features))
                connection.request("POST", path, payload, {"Content-Type": "application/json"})
                decision = fd.decide(json.loads(connection.getresponse().read()), t)
                fraud_publish("fraud-decisions", decision.record, "transaction_id")
                if decision.risk > 0.9:
                    reviews = [fd.review(features, m) for m in fd.REVIEW_MODELS]
                    fraud_block(fd.summarize(reviews, decision.risk))
                fraud_notify("Succeeded", "direct")

            for t in valid[:50]:
                direct(t)
            latencies = []
            started = time.perf_counter()
            for t in valid:
                t0 = time.perf_counter()
                direct(t)
                latencies.append((time.perf_counter() - t0) * 1000)
            floor_wall = time.perf_counter() - started
            connection.close()
            stand_ins: dict[str, Callable[..., Any]] = {
                "publish-decision": fraud_publish,
                "block-card": fraud_block,
                "notify-on-call": fraud_notify,
            }
            runs = {}
            for in_flight in (1, 16):
                summary = run_local(
                    pipeline,
                    ListSource(valid),
                    output=MemorySink(),
                    dead_letter=MemorySink(),
                    max_in_flight=in_flight,
                    stand_ins=stand_ins,
                    approver=auto_approve,
                    triton=server,
                )
                assert summary.failed == 0, summary.render()
                runs[in_flight] = summary
    return {
        "events": len(valid),
        "floor": {
            "eps": len(valid) / floor_wall,
            "p50": pct(latencies, 50),
            "p99": pct(latencies, 99),
        },
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--fraud-events", type=int, default=1000)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    events = transactions(args.events)
    base = floor(events)
    single = local(events, in_flight=1, workers=1)
    many = local(events, in_flight=8, workers=2)
    split = invoke_split()
    trip = round_trip()
    per_stage_overhead = max(s.overhead_p99_ms or 0.0 for s in single["stages"])
    lines = [
        "## Local run (`benchmarks/local_run.py`)",
        "",
        f"Command: `python benchmarks/local_run.py --events {args.events} --write`. Machine:"
        f" {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.platform()}. {args.events:,} synthetic card transactions through a 4-stage"
        " function pipeline (validate -> features -> score -> route); every figure from the same"
        " run. Latency is per event, from reading it to its result being written.",
        "",
        "| run | events/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| floor: the 4 functions called directly in one loop | {base['eps']:,.0f} | {base['p50']:.3f} | {base['p99']:.3f} |",
        f"| local executor, 1 event in flight, 1 worker/stage | {single['eps']:,.0f} | {single['p50']:.3f} | {single['p99']:.3f} |",
        f"| local executor, 8 in flight, 2 workers/stage | {many['eps']:,.0f} | {many['p50']:.3f} | {many['p99']:.3f} |",
        "",
        "Runtime overhead per stage invocation (round trip to the worker minus the time inside"
        " `Prepared.invoke`), 1 in flight:",
        "",
        "| stage | count | p50 ms | p99 ms | overhead p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for s in single["stages"]:
        lines.append(
            f"| {s.stage} | {s.count:,} | {s.p50_ms:.3f} | {s.p99_ms:.3f} | {s.overhead_p99_ms or 0:.3f} |"
        )
    verdict = "met" if per_stage_overhead < 2.0 else "missed"
    per_event_extra = single["p50"] - base["p50"]
    stage_sum = sum(s.p50_ms for s in single["stages"])
    lines += [
        "",
        f"- Overhead per stage invocation: p99 {per_stage_overhead:.3f} ms at worst over the four"
        f" stages (target below 2 ms p99: {verdict}).",
        f"- Bare worker round trip (one caller, no executor): p50 {trip['rt_p50']:.3f} ms, p99"
        f" {trip['rt_p99']:.3f} ms; of it outside the function: p50 {trip['over_p50']:.3f} ms, p99"
        f" {trip['over_p99']:.3f} ms.",
        f"- Inside the worker, decode + call + encode of `score`: p50 {split['invoke_p50'] * 1000:.1f} µs"
        f" (p99 {split['invoke_p99'] * 1000:.1f} µs) against {split['bare_p50'] * 1000:.1f} µs for the bare"
        " call: the typed decode/encode is a few microseconds.",
        f"- Per event the local run adds {per_event_extra:.3f} ms at p50 over the floor for four"
        f" stages. What dominates: the four worker round trips ({stage_sum:.3f} ms of the"
        f" {single['p50']:.3f} ms p50, each a pipe write, a `select`/`read` wake-up in both"
        " processes and JSON framing); the rest is the executor's own bookkeeping per event"
        " (payload mapping and type check, DAG scheduling, the result record, the sink). The"
        " functions themselves and the typed decode/encode are microseconds. With 2 cores, 8"
        " events in flight and 8 worker processes contend for the CPU, which is why throughput"
        " grows less than the worker count and the p99 rises.",
        "",
    ]
    fr = fraud(args.fraud_events)
    one, many_fr = fr["runs"][1], fr["runs"][16]
    score_one = next(s for s in one.stages if s.stage == "score")
    worst = max((s.overhead_p99_ms or 0.0) for s in one.stages)
    lines += [
        f"**The fraud example** (`examples/fraud_detection.py`, {fr['events']:,} valid sample events"
        " from `examples/models/fraud_events.py`, seed 11) with real scoring: a local Triton serving"
        " the generated fraud-scorer repository, called with the compiled http step's body. The floor"
        " calls the same stage functions and sends the same request over one kept-alive connection"
        " in one loop; the Kafka publish, block-card and notify stages are free stand-ins in both.",
        "",
        "| run | events/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| floor: stage functions + the Triton request in one loop | {fr['floor']['eps']:,.0f} | {fr['floor']['p50']:.3f} | {fr['floor']['p99']:.3f} |",
        f"| local executor, 1 event in flight | {one.events_per_second:,.0f} | {one.latency_p50_ms:.3f} | {one.latency_p99_ms:.3f} |",
        f"| local executor, 16 in flight | {many_fr.events_per_second:,.0f} | {many_fr.latency_p50_ms:.3f} | {many_fr.latency_p99_ms:.3f} |",
        "",
        f"- Per stage invocation at 1 in flight the runtime adds at most {worst:.3f} ms at p99"
        f" (target below 2 ms: {'met' if worst < 2.0 else 'missed'}); the score step (HTTP to"
        f" Triton) takes p50 {score_one.p50_ms:.3f} ms, p99 {score_one.p99_ms:.3f} ms.",
        "- What dominates: Triton's own time per request and the worker round trips of the four"
        " to seven function stages an event passes; at 16 in flight the 2 cores are shared by"
        " Triton, the stage workers and the executor, so latency rises with the queueing.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        from bench_report import replace_section

        replace_section("## Local run", text)
    return 0


if __name__ == "__main__":
    # Stage workers import the stages by module name, and __main__ cannot be imported: run this
    # file's code as the module `local_run`.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import local_run

    sys.exit(local_run.main())
