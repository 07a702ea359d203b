"""``rtflow.generate`` on the stream plane, against the real Triton (CPU) and its decoupled
``word_stream`` model: the worker's plan over a batch (one streamed generation per event,
concurrently, the workflow stage's typed answer, a model error a dead letter, Triton gone a
DependencyError), and worker processes on the real broker answering a retrieve -> generate
hot path exactly once with PostgreSQL + pgvector."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from local_pipelines import rag_generate

from rtflow.gpu import triton_server as ts
from rtflow.gpu.models import TritonModel
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.triton_generate import triton_generate
from rtflow.stages.inference import local_triton_server, needs_triton
from rtflow.stages.stream.generate_step import GENERATION_FAILED, GenerateStep, Generations
from rtflow.stages.stream.launcher import free_port, scrape
from rtflow.stages.stream.plan import DependencyError, Message, Plan

pytestmark = pytest.mark.integration

WORDS = "one two three four five six seven eight nine ten"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))
    pipeline = rag_generate.rag_generate_stream.build()
    folder = tmp_path_factory.mktemp("triton")
    with local_triton_server(pipeline, needs_triton(pipeline), work_dir=folder) as srv:
        yield srv


def _plan(url: str, pipeline: Any = None) -> Plan:
    plan = Plan(pipeline or rag_generate.generate_stream.build())
    plan.bind_triton({rag_generate.SERVER.name: url})
    return plan


def _messages(*questions: str) -> list[Message]:
    return [
        Message(
            "chat-questions", 0, n, json.dumps({"id": f"q{n}", "question": q}).encode(), b"k", [], 1
        )
        for n, q in enumerate(questions)
    ]


def _results(records: list[Any]) -> dict[str, dict[str, Any]]:
    state = [json.loads(r.value) for r in records if r.topic == "generated"]
    return {s["inputs"]["asked"]: s["outputs"] for s in state}


def test_a_batch_streams_one_generation_per_event_concurrently(server: TritonServer) -> None:
    plan = _plan(server.grpc_url)
    (step,) = [s for s in plan.steps if isinstance(s, GenerateStep)]
    seen: list[float] = []
    assert isinstance(step.batcher, Generations)
    step.batcher.observe = seen.append
    try:
        questions = [" ".join(WORDS.split()[n:]) for n in range(8)]
        started = time.perf_counter()
        result = plan.execute(_messages(*questions))
        elapsed = time.perf_counter() - started
    finally:
        plan.close()
    assert (result.processed, result.dead_lettered) == (8, {})
    outputs = _results(result.records)
    totals = []
    for n, question in enumerate(questions):
        generated = outputs[f"q{n}"]["reply"]["result"]
        words = question.split()[:8]
        assert generated["text"] == " ".join(words)
        assert generated["tokens"] == [words[0], *(" " + w for w in words[1:])]
        assert generated["model"] == "word-stream"
        assert 0 < generated["ttft_ms"] < generated["total_ms"]
        # the same downstream function the workflow plane's generation feeds
        assert outputs[f"q{n}"]["answer"]["result"]["text"] == generated["text"]
        totals.append(generated["total_ms"] / 1000.0)
    # 8 tokens of 30 ms each: one after the other would take the sum of the generations
    assert elapsed < sum(totals) / 2, (elapsed, totals)
    answered = [outputs[f"q{n}"]["reply"]["result"]["ttft_ms"] / 1000.0 for n in range(8)]
    assert sorted(seen) == pytest.approx(sorted(answered), abs=1e-6)


def test_the_answer_has_the_shape_the_workflow_stage_gives(server: TritonServer) -> None:
    plan = _plan(server.grpc_url)
    try:
        result = plan.execute(_messages(WORDS))
    finally:
        plan.close()
    streamed = _results(result.records)["q0"]["reply"]["result"]
    tensors = {"text_input": WORDS, "max_tokens": 8}
    workflow = triton_generate(server.grpc_url, "word-stream", tensors, 20.0)
    assert set(streamed) == set(workflow)
    assert (streamed["text"], streamed["tokens"]) == (workflow["text"], workflow["tokens"])


def test_started_and_finished_as_a_batch_in_flight(server: TritonServer) -> None:
    plan = _plan(server.grpc_url)
    try:
        first, second = plan.start(_messages("a b c")), plan.start(_messages("d e"))
        texts = [_results(b.finish().records)["q0"]["reply"]["result"]["text"]
                 for b in (first, second)]  # fmt: skip
    finally:
        plan.close()
    assert texts == ["a b c", "d e"]


def test_a_model_error_is_that_events_dead_letter(server: TritonServer) -> None:
    plan = _plan(server.grpc_url)
    try:
        result = plan.execute(_messages("all good here", "breaks FAIL midway", "fine too"))
    finally:
        plan.close()
    assert result.processed == 2
    assert result.dead_lettered == {GENERATION_FAILED: 1}
    (dead,) = [r for r in result.records if r.topic == plan.stream.dead_letter_topic]
    headers = dict(dead.headers)
    assert headers["rtflow-reason"] == b"generation_failed"
    assert headers["rtflow-stage"] == b"reply"
    assert b"word_stream: failed at token 1" in headers["rtflow-error"]
    assert json.loads(dead.value)["question"] == "breaks FAIL midway"
    assert sorted(_results(result.records)) == ["q0", "q2"]


def test_a_batch_of_poison_prompts_is_dead_lettered_not_retried_forever(
    server: TritonServer,
) -> None:
    plan = _plan(server.grpc_url)
    try:
        result = plan.execute(_messages("FAIL", "x FAIL"))
    finally:
        plan.close()
    assert (result.processed, result.dead_lettered) == (0, {GENERATION_FAILED: 2})


def test_triton_unreachable_fails_the_batch_for_a_retry() -> None:
    plan = _plan(f"127.0.0.1:{free_port()}")
    try:
        with pytest.raises(DependencyError, match=r"^Triton at 127\.0\.0\.1:\d+: .*UNAVAILABLE"):
            plan.execute(_messages("hello there"))
    finally:
        plan.close()


def test_concurrency_is_bounded_by_generations_in_flight(server: TritonServer) -> None:
    plan = _plan(server.grpc_url, rag_generate.rag_generate_stream.build())
    (step,) = [s for s in plan.steps if isinstance(s, GenerateStep)]
    pool = step.batcher
    assert isinstance(pool, Generations) and pool.concurrency == 4
    try:
        rows = [{"text_input": "a b c d e f g h", "max_tokens": 8}] * 8
        started = time.perf_counter()
        answers = pool.infer(rows)
        elapsed = time.perf_counter() - started
    finally:
        plan.close()
    made = [a for a in answers if isinstance(a, dict)]
    assert [a["text"] for a in made] == ["a b c d e f g h"] * 8
    # 8 generations of 8 tokens of 30 ms, 4 at a time: two rounds, not one, nor eight
    shortest = min(a["total_ms"] for a in made) / 1000.0
    assert 1.8 * shortest < elapsed < 6 * shortest, (elapsed, shortest)
    assert len(pool._made) == 4, "one generator (stream) per concurrent generation"


def test_workers_answer_retrieve_then_generate_exactly_once(
    server: TritonServer, kafka_broker: Any, database: str, tmp_path: Path
) -> None:
    from stream_harness import Workers, exactly_once, produce, read_committed

    from rtflow.stages.builtin.pgvector_store import create_collection, upsert_documents
    from rtflow.stages.builtin.stores import VECTOR_DSN_ENV
    from rtflow.stream_layout import stream_topics

    create_collection(database, "docs", 3)
    upsert_documents(
        database,
        "docs",
        [
            ("refunds", "Refunds are paid within 5 days.", [1.0, 0.0, 0.0], {}),
            ("shipping", "Parcels ship in 48 hours.", [0.0, 1.0, 0.0], {}),
        ],
    )
    secret = tmp_path / "rag-db-dsn"  # as the worker's Secret mount gives it
    secret.write_text(database + "\n")
    pipeline = rag_generate.rag_generate_stream.build()
    assert pipeline.stream is not None
    kafka_broker.create_topics(*stream_topics(pipeline), partitions=2)
    questions = ["when is my refund paid", "where is my parcel", "my money", "delivery FAIL"]
    events = [
        (f"q{n}", json.dumps({"id": f"q{n}", "question": questions[n % 4]}).encode())
        for n in range(60)
    ]
    env = {k: v for k, v in os.environ.items() if k != VECTOR_DSN_ENV}
    env |= {f"{VECTOR_DSN_ENV}_FILE": str(secret), "PYTHONUNBUFFERED": "1"}
    workers = Workers(
        f"{Path(rag_generate.__file__)}:rag_generate_stream",
        kafka_broker.bootstrap_servers,
        {rag_generate.SERVER.name: server.grpc_url},
        tmp_path,
        env,
    )
    try:
        produce(kafka_broker.bootstrap_servers, pipeline.stream.source_topic, events)
        first = workers.start(0)
        workers.wait_until(lambda: workers.processed() >= 20, 120, "20 events")
        first.kill()  # mid-stream: its open transaction is never read
        worker = workers.start(0)
        good = [k for k, v in events if b"FAIL" not in v]
        found = read_committed(
            kafka_broker.bootstrap_servers, "replies", expected=len(good), timeout=180,
            stop=workers.supervise,
        )  # fmt: skip
        assert exactly_once(found, good) is None, (exactly_once(found, good), workers.logs())
        dead = read_committed(
            kafka_broker.bootstrap_servers, pipeline.stream.dead_letter_topic, expected=15
        )
        assert exactly_once(dead, [k for k, v in events if b"FAIL" in v]) is None
        assert {r.headers["rtflow-reason"] for r in dead} == {b"generation_failed"}
        documents = {"refunds": "Refunds are paid within 5 days.",
                     "shipping": "Parcels ship in 48 hours."}  # fmt: skip
        nearest = dict(zip(questions, ["refunds", "shipping", "refunds"], strict=False))
        for record in found:
            reply = json.loads(record.value)["reply"]
            # word_stream echoes the prompt: the nearest document, then the question
            said = f"{documents[nearest[reply['question']]]} | {reply['question']}"
            assert reply["text"] == said, reply
            assert reply["tokens"] == len(said.split())
            assert 0 < reply["ttft_ms"] < reply["total_ms"]
        metrics = scrape(worker.metrics_port, timeout=2.0)
        ttft = [v for k, v in metrics.items()
                if k.startswith("rtflow_stream_time_to_first_token_seconds_count")]  # fmt: skip
        assert ttft and ttft[0] > 0, sorted(metrics)[:20]
        assert workers.stop_all()[-1] == 0
    finally:
        workers.kill_all()


@pytest.mark.parametrize(
    ("model", "timeout", "said"),
    [
        (replace(rag_generate.WORDS, name="not-loaded"), 20.0, "unknown model"),
        (rag_generate.WORDS, 0.05, "no final response within"),
    ],
    ids=["model-not-loaded", "past-the-timeout"],
)
def test_the_servers_state_fails_the_batch_not_the_event(
    server: TritonServer, model: TritonModel, timeout: float, said: str
) -> None:
    pool = Generations(server.grpc_url, model, concurrency=2, timeout_seconds=timeout)
    try:
        with pytest.raises(DependencyError, match=said):
            pool.infer([{"text_input": "a b c d e f g h", "max_tokens": 8}] * 2)
    finally:
        pool.close()
