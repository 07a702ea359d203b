"""Triton ensembles against the real Triton (the nvidia-pytriton wheel's, on CPU).

``spell`` (tests/local_pipelines/ensemble) is the shape of TensorRT-LLM's text ensemble with
toy Python-backend models: ``tokenizer`` (text -> character ids) -> ``generator`` (decoupled,
streams the prompt back word by word, upper-cased) -> ``detokenizer`` (ids -> text), so
``rtflow.generate`` streams text end to end through three models. ``shout-ensemble`` runs a
one-answer model in the middle and answers a plain infer (and an output straight from its
first step). Triton loads both from the configuration rtflow renders, with
``--disable-auto-complete-config``, so it checks every ensemble rule itself. The stream
plane's generate step streams from the ensemble as from any decoupled model.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import local_triton_for
from local_pipelines import ensemble as pipelines
from local_pipelines.ensemble import SHOUT, SPELL

from rtflow.gpu.generate import (
    GenerationError,
    TritonGenerator,
    generation_inputs,
    stream_http,
)
from rtflow.gpu.kserve import encode_request, infer_path, infer_request, parse_infer_response
from rtflow.gpu.triton_server import TritonServer
from rtflow.stages.builtin.triton_generate import triton_generate
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.inference import write_local_repository
from rtflow.stages.local import run_local
from rtflow.stages.stream.plan import Message, Plan

pytestmark = pytest.mark.integration

PROMPT = "the quick brown fox jumps"


def spelled(prompt: str, budget: int) -> list[str]:
    words = prompt.upper().split()[:budget]
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    # rtflow run --local's server for the generate pipeline loads spell and its step models;
    # the shout ensemble (sharing the tokenizer and detokenizer) is added to the same one
    folder = tmp_path_factory.mktemp("triton-ensemble")
    made = local_triton_for(pipelines.ensemble_generation.build(), folder)
    write_local_repository([SHOUT, pipelines.UPPER], made.model_repository)
    made.models = [*(made.models or []), SHOUT.name, pipelines.UPPER.name]
    with made as srv:
        yield srv


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def test_triton_loads_the_rendered_ensembles(server: TritonServer) -> None:
    config = get_json(f"{server.http_url}/v2/models/spell/config")
    assert config["platform"] == "ensemble"
    assert config["model_transaction_policy"]["decoupled"] is True
    steps = config["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["tokenizer", "generator", "detokenizer"]
    assert steps[1]["input_map"] == {"ids": "_ids", "max_tokens": "max_tokens"}
    shout = get_json(f"{server.http_url}/v2/models/shout-ensemble/config")
    assert not shout.get("model_transaction_policy", {}).get("decoupled", False)
    for name in ("spell", "shout-ensemble", "tokenizer", "generator", "upper", "detokenizer"):
        with urllib.request.urlopen(f"{server.http_url}/v2/models/{name}/ready") as response:
            assert response.status == 200


def test_generate_streams_text_through_the_three_models(server: TritonServer) -> None:
    with TritonGenerator(server.grpc_url, SPELL, timeout_seconds=60) as llm:
        tokens = list(llm.stream(PROMPT, max_tokens=100))
        assert tokens == spelled(PROMPT, 100)
        made = llm.generate(PROMPT, max_tokens=3)  # the budget reached the generator step
    assert made.text == "THE QUICK BROWN"
    assert made.tokens == tuple(spelled(PROMPT, 3))
    assert 0 < made.ttft_ms < made.total_ms


def test_generate_stream_over_http_reaches_the_ensemble(server: TritonServer) -> None:
    inputs = generation_inputs(SPELL, "hello ensemble world", max_tokens=2)
    assert list(stream_http(server.http_url, SPELL, inputs)) == ["HELLO", " ENSEMBLE"]


def test_a_step_failing_mid_stream_is_a_generation_error(server: TritonServer) -> None:
    with (
        TritonGenerator(server.grpc_url, SPELL, timeout_seconds=60) as llm,
        pytest.raises(GenerationError, match="failed at token 2") as caught,
    ):
        list(llm.stream("one two FAIL four", max_tokens=10))
    # the tokens before it, or the first of them: the generator's error leaves the ensemble
    # at once, and may overtake a token still in the detokenizer step
    assert caught.value.tokens in {(), ("ONE",), ("ONE", " TWO")}


def test_the_builtin_generate_stage_answers_the_typed_generation(server: TritonServer) -> None:
    answer = triton_generate(
        server.grpc_url, SPELL.name, {"text_input": ["to be or not"], "max_tokens": [3]}, 60.0
    )
    assert answer["model"] == "spell"
    assert answer["text"] == "TO BE OR"
    assert answer["tokens"] == ["TO", " BE", " OR"]


def test_a_plain_infer_answers_through_the_one_answer_ensemble(server: TritonServer) -> None:
    body = encode_request(infer_request(SHOUT, {"text_input": ["Hello, ensemble"]}))
    request = urllib.request.Request(
        server.http_url + infer_path(SHOUT),
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        outputs = parse_infer_response(SHOUT, response.read())
    assert list(outputs["text_output"].data) == ["HELLO, ENSEMBLE"]
    assert list(outputs["length"].data) == [15]  # from the first step, straight to the answer


def test_pipelines_run_locally_against_the_ensembles(server: TritonServer, tmp_path: Path) -> None:
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        pipelines.ensemble_generation.build(),
        ListSource([{"question": q} for q in ["what is an ensemble", "a FAIL b"]]),
        output=out,
        dead_letter=dead,
        triton=server,
        log_dir=tmp_path / "generate-logs",
    )
    answers = {r["event"]: r["outputs"]["answer"]["result"] for r in out.records}
    assert answers["event:0"]["text"] == "WHAT IS AN ENSEMBLE"
    assert answers["event:0"]["tokens"] == spelled("what is an ensemble", 8)
    assert summary.generations == 1 and len(dead.records) == 1
    out, dead = MemorySink(), MemorySink()
    run_local(
        pipelines.ensemble_shout.build(),
        ListSource([{"message": "quiet"}]),
        output=out,
        dead_letter=dead,
        triton=server,
        log_dir=tmp_path / "shout-logs",
    )
    assert not dead.records, dead.records
    (record,) = out.records
    assert record["outputs"]["summary"]["result"] == "QUIET (5 characters)"


def test_the_stream_plane_generates_through_the_ensemble(server: TritonServer) -> None:
    plan = Plan(pipelines.ensemble_stream.build())
    plan.bind_triton({pipelines.SERVER.name: server.grpc_url})
    questions = ["stream me", "one two three", "x FAIL y"]
    messages = [
        Message("questions", 0, n, json.dumps({"id": f"q{n}", "question": q}).encode(), b"k", [], 1)
        for n, q in enumerate(questions)
    ]
    try:
        result = plan.execute(messages)
    finally:
        plan.close()
    assert result.processed == 2 and sum(result.dead_lettered.values()) == 1
    state = [json.loads(r.value) for r in result.records if r.topic == "generated"]
    replies = {s["inputs"]["asked"]: s["outputs"]["reply"]["result"] for s in state}
    assert replies["q0"]["text"] == "STREAM ME" and replies["q0"]["model"] == "spell"
    assert replies["q1"]["tokens"] == spelled("one two three", 8)
