"""``rtflow.generate`` at compile time: the step it compiles to, the model files it writes, and
the one-line errors of a wrong call (no Triton needed)."""

from __future__ import annotations

from typing import Any

import pytest
from local_pipelines.generation import SERVER, WORDS, generation

import rtflow
from rtflow.errors import DefinitionError, RtflowError
from rtflow.generators.compiler import compile_pipelines
from rtflow.gpu.llm import vllm_engine_args, vllm_model
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.server import triton_serving


def workflow_template(bundle: Any) -> dict[str, Any]:
    (doc,) = [m.body for m in bundle.manifests if m.kind == "WorkflowTemplate"]
    assert isinstance(doc, dict)
    return doc


def test_generate_compiles_to_the_builtin_generate_stage_over_grpc() -> None:
    doc = workflow_template(compile_pipelines([generation.build()]))
    templates = {t["name"]: t for t in doc["spec"]["templates"]}
    step = templates["reply"]
    assert "http" not in step
    assert step["container"]["args"][:2] == [
        "run",
        "rtflow.stages.builtin.triton_generate:triton_generate",
    ]
    declared = {p["name"]: p.get("default") for p in step["inputs"]["parameters"]}
    assert declared == {
        "url": "llm-triton:8001",
        "model": "word-stream",
        "tensors": None,
        "timeout_seconds": "20.0",
    }
    (dag,) = [t for t in doc["spec"]["templates"] if "dag" in t]
    tasks = {t["name"]: t for t in dag["dag"]["tasks"]}
    (tensors,) = tasks["reply"]["arguments"]["parameters"]
    assert tensors["name"] == "tensors"
    assert "text_input" in tensors["value"] and '"max_tokens":[8]' in tensors["value"]
    assert tasks["answer"]["arguments"]["parameters"][0]["value"] == (
        "{{tasks.reply.outputs.parameters.result}}"
    )


def test_the_compiled_output_is_deterministic() -> None:
    first = compile_pipelines([generation.build()])
    second = compile_pipelines([generation.build()])
    assert [m.body for m in first.manifests] == [m.body for m in second.manifests]
    assert [(f.path, f.text) for f in first.files] == [(f.path, f.text) for f in second.files]


def test_the_decoupled_model_config_is_written() -> None:
    bundle = compile_pipelines([generation.build()])
    (config,) = [f.text for f in bundle.files if f.path.endswith("word-stream/config.pbtxt")]
    assert "model_transaction_policy { decoupled: true }" in config


def test_a_vllm_model_compiles_with_its_model_json() -> None:
    chat = vllm_model(
        "chat", model="facebook/opt-125m", repository="pvc://models/llm", max_model_len=2048
    )
    server = triton_serving("chat-triton", [chat], pool=gpu_pool("l4", product="NVIDIA-L4"))

    @rtflow.pipeline(name="chat", namespace="llm")
    def chat_pipeline(question: str) -> None:
        rtflow.generate(server, chat, question, max_tokens=64, sampling={"temperature": 0.2})

    bundle = compile_pipelines([chat_pipeline.build()])
    files = {f.path: f.text for f in bundle.files}
    assert "model-repository/chat/1/model.json" in files
    assert '"max_model_len": 2048' in files["model-repository/chat/1/model.json"]
    assert vllm_engine_args(chat)["model"] == "facebook/opt-125m"
    doc = workflow_template(bundle)
    (dag,) = [t for t in doc["spec"]["templates"] if "dag" in t]
    (task,) = dag["dag"]["tasks"]
    value = task["arguments"]["parameters"][0]["value"]
    # vLLM takes the budget inside sampling_parameters (a JSON text), stream as a tensor
    assert "sampling_parameters" in value and "max_tokens" in value and '"stream":[true]' in value


def errors_of(body: Any) -> DefinitionError:
    @rtflow.pipeline(name="wrong")
    def wrong(question: str) -> None:
        body(question)

    with pytest.raises(DefinitionError) as info:
        wrong.build()
    return info.value


def test_infer_on_a_streaming_model_fails_at_compile_time() -> None:
    error = errors_of(lambda q: rtflow.infer(SERVER, WORDS, {"text_input": q, "max_tokens": 3}))
    assert error.field == "model"
    assert "call it with rtflow.generate" in str(error)
    assert "\n" not in str(error)


def test_generate_on_a_one_answer_model_fails_at_compile_time() -> None:
    from local_pipelines.text import SERVER as TEXT_SERVER
    from local_pipelines.text import SHOUT

    error = errors_of(lambda q: rtflow.generate(TEXT_SERVER, SHOUT, q))
    assert "not decoupled" in str(error) and error.field == "model"
    assert error.pipeline == "wrong" and error.stage == "generate-shout"


@pytest.mark.parametrize(
    ("call", "field", "message"),
    [
        (lambda q: rtflow.generate(SERVER, "nope", q), "model", "does not serve model 'nope'"),
        (lambda q: rtflow.generate(SERVER, WORDS, q, max_tokens=0), "max_tokens", "positive"),
        (
            lambda q: rtflow.generate(SERVER, WORDS, q, sampling={"temperature": 0.1}),
            "sampling",
            "no 'sampling_parameters' input",
        ),
        (lambda q: rtflow.generate(SERVER, WORDS, 5), "text_input", "list[str]"),
    ],
)
def test_wrong_calls_are_one_line_errors(call: Any, field: str, message: str) -> None:
    error = errors_of(call)
    assert error.field == field, str(error)
    assert message in str(error)
    assert "\n" not in str(error)


def test_generate_outside_a_pipeline_says_so() -> None:
    with pytest.raises(RtflowError, match="inside a pipeline"):
        rtflow.generate(SERVER, WORDS, "hi")


def test_generation_inputs_follow_the_names_the_model_declares() -> None:
    from dataclasses import replace

    from rtflow.gpu.generate import generation_inputs
    from rtflow.gpu.tensors import Tensor

    chat = vllm_model("chat", model="m", repository="pvc://m/l")
    vllm = generation_inputs(chat, "hi", max_tokens=7, sampling={"temperature": 0.5})
    assert vllm == {
        "text_input": "hi",
        "stream": True,
        "sampling_parameters": '{"max_tokens": 7, "temperature": 0.5}',
    }
    # a TensorRT-LLM ensemble's names: the budget is request_output_len, the flag streaming
    ensemble = replace(
        WORDS,
        inputs=(
            Tensor("text_input", "TYPE_STRING", (1,)),
            Tensor("request_output_len", "TYPE_INT32", (1,)),
            Tensor("streaming", "TYPE_BOOL", (1,)),
            Tensor("end_id", "TYPE_INT32", (1,), optional=True),
        ),
    )
    assert generation_inputs(ensemble, "hi", max_tokens=9) == {
        "text_input": "hi",
        "request_output_len": 9,
        "streaming": True,
    }
    with pytest.raises(DefinitionError, match="is not JSON") as info:
        generation_inputs(chat, "hi", max_tokens=7, sampling={"temperature": float("nan")})
    assert info.value.field == "sampling"
    required = replace(WORDS, inputs=(*WORDS.inputs, Tensor("seed", "TYPE_INT32", (1,))))
    with pytest.raises(DefinitionError, match="needs input 'seed'"):
        generation_inputs(required, "hi", max_tokens=3)
