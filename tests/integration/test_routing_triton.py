"""``rtflow.route`` and the response caches against a real Triton (the nvidia-pytriton
wheel's, on CPU) serving two Python-backend models that say which of them answered
(``small`` answers ``which`` 1, ``large`` 2; tests/local_pipelines/routes/).

Routing: each route reaches its model on the workflow plane run locally, on the stream plane's
plan (each model its own micro-batches) and through ``rtflow run --local`` with a real broker.
Caching: the stream worker's answer cache answers a repeated request without Triton (Triton's
own count of requests does not grow), and Triton's response cache, enabled by the generated
config and server flag, reports hits for a repeated request in the model's statistics.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import component_missing, local_triton_for
from local_pipelines import routing

from rtflow.gpu.kserve import encode_request, infer_path, infer_request
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.stages.stream.answer_cache import observe_caches
from rtflow.stages.stream.metrics import StreamMetrics
from rtflow.stages.stream.plan import Message, Plan
from rtflow.stages.stream.steps import InferenceStep
from rtflow.stages.stream.triton import Rejected, TritonBatcher

pytestmark = pytest.mark.integration

TIERS = ["premium", "free", "premium", "basic", "free", "premium", "gold"]
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_for(routing.routed.build(), folder) as srv:
        yield srv


def stats(server: TritonServer, model: str) -> dict[str, Any]:
    """Triton's own statistics of ``model`` (``/v2/models/<m>/stats``), its one version."""
    with _OPENER.open(f"{server.http_url}/v2/models/{model}/stats", timeout=10) as response:
        (entry,) = json.loads(response.read())["model_stats"]
    return dict(entry)


def succeeded(server: TritonServer, model: str, at_least: int = 0) -> int:
    """Requests Triton answered for ``model`` (from the model or from its cache), once the
    count has reached ``at_least`` or 10 s have passed.

    The Python backend reports a request's statistics after it has sent the answer, so a
    client can hold the answer before the count grows (a CI run read it one short). Waiting
    for the count a test expects, then asserting it exactly, keeps the check strict.
    """
    deadline = time.monotonic() + 10.0
    while True:
        count = int(stats(server, model)["inference_stats"]["success"]["count"])
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.02)


def settled(server: TritonServer, model: str) -> int:
    """``succeeded`` once two reads a quarter second apart agree: a count to compare against
    later, with no answer's statistics still on their way."""
    count = succeeded(server, model)
    while True:
        time.sleep(0.25)
        again = succeeded(server, model)
        if again == count:
            return count
        count = again


def direct_request(server: TritonServer, model: Any, features: list[float]) -> dict[str, Any]:
    """One request to ``model`` over HTTP, past every rtflow cache."""
    request = urllib.request.Request(
        server.http_url + infer_path(model),
        data=encode_request(infer_request(model, {"features": [features]})),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with _OPENER.open(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def expected(tier: str, amount: float) -> tuple[int, float]:
    mark = 2 if tier == "premium" else 1
    return mark, (amount + 1.0) * mark


def test_the_server_runs_with_the_cache_flag(server: TritonServer) -> None:
    assert any(a.startswith("--cache-config=local,size=") for a in server.extra_args)


def test_each_route_reaches_its_model_on_the_local_workflow_plane(
    server: TritonServer, tmp_path: Path
) -> None:
    out, dead = MemorySink(), MemorySink()
    events = [{"amount": float(i), "tier": t} for i, t in enumerate(TIERS)]
    summary = run_local(
        routing.routed.build(),
        ListSource(events),
        output=out,
        dead_letter=dead,
        max_in_flight=4,
        triton=server,
        log_dir=tmp_path / "logs",
    )
    assert summary.failed == 0, dead.records
    got = {}
    for record in out.records:
        ran = record["outputs"]
        # exactly one route ran: its reader is `answered` (large) or `answered-2` (small)
        (reader,) = [n for n in ("answered", "answered-2") if n in ran]
        got[record["event"]] = ran[reader]["result"]
    for index, tier in enumerate(TIERS):
        which, total = expected(tier, float(index))
        assert got[f"event:{index}"] == {"tier": tier, "which": which, "total": total}


def _messages(tiers: list[str], amounts: list[float]) -> list[Message]:
    return [
        Message("payments", 0, offset, json.dumps({"amount": a, "tier": t}).encode(), None, [], 0)
        for offset, (t, a) in enumerate(zip(tiers, amounts, strict=True))
    ]


def test_the_stream_plane_groups_the_batch_per_model_and_caches_repeats(
    server: TritonServer,
) -> None:
    plan = Plan(routing.routed_stream.build())
    plan.bind_triton({routing.SERVER.name: server.grpc_url})
    metrics = StreamMetrics("routed-stream", "0")  # the worker's own counters
    observe_caches(plan.steps, metrics.answer_cache)
    batchers = {s.task.name: s.batcher for s in plan.steps if isinstance(s, InferenceStep)}
    try:
        tiers = TIERS * 3
        amounts = [float(i % len(TIERS)) for i in range(len(tiers))]  # each event 3 times
        result = plan.execute(_messages(tiers, amounts))
        published = [json.loads(r.value) for r in result.records if r.topic == "scored"]
        assert len(published) == len(tiers), result.dead_lettered
        for item in published:
            outputs = {o["name"]: o["data"][0] for o in item["answer"]["outputs"]}
            which, total = expected(item["tier"], item["amount"])
            assert (item["answer"]["model_name"], outputs) == (
                "large" if which == 2 else "small",
                {"which": which, "total": total},
            )
        large, small = batchers["score-large"], batchers["score-small"]
        premium = TIERS.count("premium")
        # one request per model for its share of the batch: the repeats never left the worker
        assert (large.requests, large.rows) == (1, premium)
        assert (small.requests, small.rows) == (1, len(TIERS) - premium)
        assert (large.cache.hits, large.cache.misses) == (2 * premium, premium)
        counted = {
            (stage, outcome): metrics.registry.get_sample_value(
                "rtflow_stream_inference_cache_total", {"stage": stage, "outcome": outcome}
            )
            for stage in ("score-large", "score-small")
            for outcome in ("hit", "miss")
        }
        others = len(TIERS) - premium
        assert counted == {
            ("score-large", "hit"): 2 * premium,
            ("score-large", "miss"): premium,
            ("score-small", "hit"): 2 * others,
            ("score-small", "miss"): others,
        }
        before = settled(server, "large")
        again = plan.execute(_messages(["premium"], [0.0]))
        assert [json.loads(r.value)["answer"]["outputs"][0]["data"] for r in again.records] == [[2]]
        assert large.requests == 1  # answered from the worker's cache
        # Triton's count did not grow either: one request past every cache, once its count
        # has settled, is the only one counted since
        direct_request(server, routing.LARGE, [-7.0, 0.25])
        assert succeeded(server, "large", at_least=before + 1) == before + 1
        assert large.cache.hits == 2 * premium + 1
    finally:
        plan.close()


def test_the_answer_cache_is_bounded_and_keyed_by_the_exact_tensors(server: TritonServer) -> None:
    model = routing.scorer("small")
    batcher = TritonBatcher(server.grpc_url, model, batch=8, in_flight=1, timeout_seconds=10)
    assert batcher.cache is not None
    batcher.cache.entries = 2
    try:
        start = settled(server, "small")
        first = batcher.infer([{"features": [1.0, 2.0]}, {"features": [3.0, 4.0]}])
        assert [a["outputs"][1]["data"] for a in first if not isinstance(a, Rejected)] == [
            [3.0],
            [7.0],
        ]
        assert succeeded(server, "small", at_least=start + 1) == start + 1
        # the same values in another dtype are the same float32 bytes; 1.0 vs 1.5 are not
        again = batcher.infer([{"features": [1, 2]}, {"features": [1.5, 2.0]}])
        assert [a["outputs"][1]["data"] for a in again if not isinstance(a, Rejected)] == [
            [3.0],
            [3.5],
        ]
        assert (batcher.cache.hits, batcher.cache.misses) == (1, 3)
        assert succeeded(server, "small", at_least=start + 2) == start + 2
        assert len(batcher.cache) == 2  # [3, 4] was the least recently used: evicted
        batcher.infer([{"features": [3.0, 4.0]}])
        assert batcher.cache.misses == 4
        # a row that does not fit is rejected, never cached
        (bad,) = batcher.infer([{"features": [1.0]}])
        assert isinstance(bad, Rejected) and len(batcher.cache) == 2
    finally:
        batcher.close()


def test_triton_s_response_cache_answers_a_repeated_request(server: TritonServer) -> None:
    answered = settled(server, "large")
    before = stats(server, "large")
    for _ in range(3):
        answer = direct_request(server, routing.LARGE, [41.0, 0.5])
        assert {o["name"]: o["data"] for o in answer["outputs"]} == {
            "which": [2],
            "total": [83.0],
        }
    succeeded(server, "large", at_least=answered + 3)  # the statistics have settled
    after = stats(server, "large")
    hits = (
        after["inference_stats"]["cache_hit"]["count"]
        - before["inference_stats"]["cache_hit"]["count"]
    )
    runs = after["execution_count"] - before["execution_count"]
    assert (hits, runs) == (2, 1)  # the model ran once; the two repeats came from the cache


def test_rtflow_run_local_routes_events_from_a_real_broker(
    server: TritonServer, kafka_broker: Any, tmp_path: Path
) -> None:
    from stream_harness import read_committed

    from rtflow.stream_layout import stream_topics

    pipeline = routing.routed_stream.build()
    kafka_broker.create_topics(*stream_topics(pipeline))
    events = tmp_path / "events.jsonl"
    sent = [{"amount": float(i), "tier": t} for i, t in enumerate(TIERS * 2)]
    events.write_text("".join(json.dumps(e) + "\n" for e in sent))
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "run", "--local",
         f"{Path(routing.__file__)}:routed_stream", "--events", str(events),
         "--kafka-brokers", kafka_broker.bootstrap_servers,
         "--triton-grpc-url", server.grpc_url, "--log-dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = read_committed(kafka_broker.bootstrap_servers, "scored", expected=len(sent))
    got = sorted(
        (p["amount"], p["tier"], p["answer"]["model_name"], p["answer"]["outputs"][0]["data"][0])
        for p in (json.loads(r.value) for r in found)
    )
    assert got == sorted(
        (e["amount"], e["tier"], "large" if e["tier"] == "premium" else "small",
         expected(str(e["tier"]), float(e["amount"]))[0])
        for e in sent
    )  # fmt: skip


def test_the_routed_workflow_template_passes_argo_lint(tmp_path: Path) -> None:
    from rtflow.generators.compiler import compile_pipelines
    from rtflow.generators.writers import write_folder
    from rtflow.verify.argo_linters import LinterUnavailable, find_argo_lint, run_argo_lint

    try:
        find_argo_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))
    write_folder(compile_pipelines([routing.routed.build()]), tmp_path)
    (manifest,) = sorted(tmp_path.rglob("workflowtemplate-*.yaml"))
    result = run_argo_lint([manifest])
    assert result.ok, "\n".join(result.findings)
