"""Streaming generation against a real Triton (the nvidia-pytriton wheel's, on CPU).

The model (tests/local_pipelines/word_stream/1/model.py) is a decoupled Python-backend model
that echoes its prompt word by word, one response per word 30 ms apart, as an LLM backend
streams tokens; ``FAIL`` in the prompt makes it answer an error mid-stream. Every path rtflow
has to a streaming model is exercised: gRPC streaming (``TritonGenerator``), HTTP
``generate_stream`` (Server-Sent Events), and the built-in generate stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import triton_available
from local_pipelines.generation import WORDS, generation

from rtflow.errors import DefinitionError
from rtflow.gpu.config import write_repository
from rtflow.gpu.generate import (
    GenerationError,
    GenerationTimeout,
    TritonGenerator,
    collect,
    generation_inputs,
    stream_http,
)
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.triton_generate import triton_generate
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.stages.runtime import BadInput

pytestmark = pytest.mark.integration

PROMPT = "the quick brown fox jumps over the lazy dog"
WORDS_OF = PROMPT.split()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    triton_available()
    folder = tmp_path_factory.mktemp("triton-generate")
    base = __import__("local_pipelines").__path__[0]
    repository = write_repository([WORDS], folder / "models", base=base, cpu_only=True)
    log = folder / "word_stream.log"
    with TritonServer(
        repository,
        env={"WORD_STREAM_LOG": str(log)},
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        model_control_mode="explicit",
        models=[WORDS.name],
        extra_args=["--disable-auto-complete-config"],
        work_dir=folder / "server",
    ) as srv:
        yield srv


@pytest.fixture
def generator(server: TritonServer) -> Iterator[TritonGenerator]:
    with TritonGenerator(server.grpc_url, WORDS, timeout_seconds=30) as made:
        yield made


def expected_tokens(count: int) -> list[str]:
    return [w if i == 0 else f" {w}" for i, w in enumerate(WORDS_OF[:count])]


def test_grpc_stream_yields_tokens_in_order_as_they_arrive(generator: TritonGenerator) -> None:
    arrivals: list[float] = []
    tokens: list[str] = []
    started = time.perf_counter()
    for token in generator.stream(PROMPT, max_tokens=100):
        arrivals.append(time.perf_counter() - started)
        tokens.append(token)
    assert tokens == expected_tokens(len(WORDS_OF))
    # the first token is in hand before the last is made: tokens arrive spread out, not at once
    assert arrivals[0] < arrivals[-1]
    assert arrivals == sorted(arrivals)


def test_grpc_generation_is_typed_and_measures_time_to_first_token(
    generator: TritonGenerator,
) -> None:
    made = generator.generate(PROMPT, max_tokens=5)
    assert made.tokens == tuple(expected_tokens(5))
    assert made.text == " ".join(WORDS_OF[:5])
    assert made.model == WORDS.name
    assert 0 < made.ttft_ms < made.total_ms
    assert made.as_json()["text"] == made.text


def test_http_generate_stream_gives_the_same_tokens(server: TritonServer) -> None:
    inputs = generation_inputs(WORDS, PROMPT, max_tokens=4)
    made = collect(stream_http(server.http_url, WORDS, inputs, timeout_seconds=30), WORDS.name)
    assert list(made.tokens) == expected_tokens(4)
    assert 0 < made.ttft_ms < made.total_ms


def test_text_round_trips_through_both_paths(
    server: TritonServer, generator: TritonGenerator
) -> None:
    prompt = 'straße "quoted" \\ 日本 <&>'
    want = tuple(w if i == 0 else f" {w}" for i, w in enumerate(prompt.split()))
    assert generator.generate(prompt, max_tokens=10).tokens == want
    inputs = generation_inputs(WORDS, prompt, max_tokens=10)
    assert tuple(stream_http(server.http_url, WORDS, inputs)) == want


def test_a_model_error_mid_stream_is_a_generation_error_with_the_tokens_before(
    server: TritonServer, generator: TritonGenerator
) -> None:
    with pytest.raises(GenerationError, match="failed at token 2") as grpc_error:
        generator.generate("one two FAIL four", max_tokens=10)
    assert grpc_error.value.tokens == ("one", " two")
    inputs = generation_inputs(WORDS, "one two FAIL four", max_tokens=10)
    with pytest.raises(GenerationError, match="failed at token 2") as http_error:
        list(stream_http(server.http_url, WORDS, inputs))
    assert http_error.value.tokens == ("one", " two")
    # the generator is usable after the error
    assert generator.generate("still here", max_tokens=5).text == "still here"


def endings(server: TritonServer) -> list[str]:
    """How the model says each request ended (``done n`` / ``cancelled n``), in order."""
    log = server.work_dir.parent / "word_stream.log"
    return log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def cancelled_in_the_model(server: TritonServer, before: int) -> list[str]:
    """The endings logged since ``before`` once the model has seen the cancellation (it
    checks before each token, so within a token's delay)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        new = endings(server)[before:]
        if new:
            return new
        time.sleep(0.05)
    return []


def test_a_deadline_cancels_the_stream(server: TritonServer, generator: TritonGenerator) -> None:
    long_prompt = " ".join(f"w{i}" for i in range(200))  # 200 tokens x 30 ms = 6 s
    before = len(endings(server))
    started = time.perf_counter()
    with pytest.raises(GenerationTimeout) as info:
        generator.generate(long_prompt, max_tokens=200, timeout_seconds=0.3)
    assert time.perf_counter() - started < 3.0
    assert 0 < len(info.value.tokens) < 200
    # Triton told the model: it stopped generating, well before its 200 tokens
    (ending,) = cancelled_in_the_model(server, before)
    kind, count = ending.split()
    assert kind == "cancelled" and int(count) < 50
    assert generator.generate("after timeout", max_tokens=5).text == "after timeout"


def test_http_deadline(server: TritonServer) -> None:
    long_prompt = " ".join(f"w{i}" for i in range(200))
    inputs = generation_inputs(WORDS, long_prompt, max_tokens=200)
    before = len(endings(server))
    started = time.perf_counter()
    with pytest.raises(GenerationTimeout):
        list(stream_http(server.http_url, WORDS, inputs, timeout_seconds=0.3))
    assert time.perf_counter() - started < 3.0
    # closing the connection is how an HTTP client cancels: Triton tells the model
    (ending,) = cancelled_in_the_model(server, before)
    assert ending.split()[0] == "cancelled" and int(ending.split()[1]) < 50


def test_leaving_the_stream_early_cancels_it(
    server: TritonServer, generator: TritonGenerator
) -> None:
    long_prompt = " ".join(f"w{i}" for i in range(200))
    before = len(endings(server))
    started = time.perf_counter()
    taken = []
    for token in generator.stream(long_prompt, max_tokens=200):
        taken.append(token)
        if len(taken) == 2:
            break
    assert taken == ["w0", " w1"]
    assert time.perf_counter() - started < 3.0  # not the 6 s the whole stream takes
    (ending,) = cancelled_in_the_model(server, before)
    assert ending.split()[0] == "cancelled" and int(ending.split()[1]) < 50
    assert generator.generate("next one", max_tokens=5).text == "next one"


def test_an_unknown_model_is_an_error(server: TritonServer) -> None:
    from dataclasses import replace

    ghost = replace(WORDS, name="no-such-model")
    with (
        TritonGenerator(server.grpc_url, ghost, timeout_seconds=10) as made,
        pytest.raises(GenerationError, match="no-such-model"),
    ):
        made.generate("hello", max_tokens=3)
    inputs = generation_inputs(WORDS, "hello", max_tokens=3)
    with pytest.raises(GenerationError, match="40"):
        list(stream_http(server.http_url, ghost, inputs))


def test_a_model_that_does_not_stream_is_refused_before_any_call() -> None:
    from dataclasses import replace

    with pytest.raises(DefinitionError, match="not decoupled"):
        generation_inputs(replace(WORDS, decoupled=False), "hi", max_tokens=3)


def test_the_builtin_generate_stage_answers_the_typed_generation(server: TritonServer) -> None:
    answer = triton_generate(
        server.grpc_url, WORDS.name, {"text_input": [PROMPT], "max_tokens": [3]}, 30.0
    )
    assert answer["text"] == "the quick brown"
    assert answer["tokens"] == ["the", " quick", " brown"]
    assert answer["model"] == WORDS.name
    assert 0 < answer["ttft_ms"] < answer["total_ms"]


def test_the_builtin_stage_sorts_bad_inputs_from_model_errors(server: TritonServer) -> None:
    with pytest.raises(BadInput, match="no input 'prompt'"):
        triton_generate(server.grpc_url, WORDS.name, {"prompt": ["x"]}, 30.0)
    with pytest.raises(BadInput, match="max_tokens"):  # a required input missing: refused
        triton_generate(server.grpc_url, WORDS.name, {"text_input": ["x"]}, 30.0)
    with pytest.raises(GenerationError, match="failed at token 1"):  # the model broke: retry
        triton_generate(
            server.grpc_url, WORDS.name, {"text_input": ["a FAIL"], "max_tokens": [5]}, 30.0
        )


def test_a_pipeline_run_locally_streams_and_reports_time_to_first_token(
    server: TritonServer, tmp_path: Path
) -> None:
    out, dead = MemorySink(), MemorySink()
    questions = ["what is rtflow", "one two three four five six seven eight nine ten", "x FAIL"]
    summary = run_local(
        generation.build(),
        ListSource([{"question": q} for q in questions]),
        output=out,
        dead_letter=dead,
        triton=server,
        log_dir=tmp_path / "logs",
    )
    answers = {r["event"]: r["outputs"]["answer"]["result"] for r in out.records}
    assert answers["event:0"]["text"] == "what is rtflow"
    # max_tokens=8 in the pipeline: the budget reached the model
    assert answers["event:1"]["text"] == "one two three four five six seven eight"
    assert answers["event:1"]["tokens"] == 8
    for answer in answers.values():
        assert 0 < answer["ttft_ms"] < answer["total_ms"]
    # the run reports time to first token over the generations that succeeded
    assert summary.generations == 2
    assert summary.ttft_p50_ms is not None and summary.ttft_p99_ms is not None
    assert 0 < summary.ttft_p50_ms <= summary.ttft_p99_ms
    assert summary.ttft_p99_ms <= max(a["ttft_ms"] for a in answers.values())
    assert "time to first token (2 generations): p50" in summary.render()
    assert summary.as_dict()["ttft_p99_ms"] == summary.ttft_p99_ms
    # the model's error mid-stream: the event is a dead letter naming it, not a crash
    assert summary.failed == 1
    (failed,) = dead.records
    assert "failed at token 1" in json.dumps(failed)
