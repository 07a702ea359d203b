"""Triton ensembles of small Python-backend models, for tests against the real Triton.

``tokenizer`` (text -> character ids) -> ``generator`` (decoupled: streams the prompt back
word by word, upper-cased) -> ``detokenizer`` (ids -> text) is the shape of a TensorRT-LLM
text ensemble (preprocessing -> tensorrt_llm -> postprocessing), so ``SPELL`` answers
``rtflow.generate`` with text; ``SHOUT`` runs ``upper`` (one answer) in the middle instead and
answers a plain infer. The same tokenizer and detokenizer serve both ensembles.
``ensemble_stream`` is the generation on the stream plane (one streamed request per event).
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.ensemble import EnsembleStep, step_models, triton_ensemble
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_serving
from rtflow.gpu.tensors import Tensor

REPOSITORY = "pvc://triton-models/ensemble"
CPU = [{"count": 1, "kind": "KIND_CPU"}]

TOKENIZER = triton_model(
    "tokenizer",
    backend="python",
    inputs=[Tensor("text", "TYPE_STRING", (1,))],
    outputs=[Tensor("ids", "TYPE_INT32", (-1,)), Tensor("count", "TYPE_INT32", (1,))],
    instance_groups=CPU,
    repository=REPOSITORY,
    versions={1: "tokenizer/1"},
)
GENERATOR = triton_model(
    "generator",
    backend="python",
    decoupled=True,
    inputs=[Tensor("ids", "TYPE_INT32", (-1,)), Tensor("max_tokens", "TYPE_INT32", (1,))],
    outputs=[Tensor("ids_out", "TYPE_INT32", (-1,))],
    instance_groups=CPU,
    repository=REPOSITORY,
    versions={1: "generator/1"},
    parameters={"delay_ms": 20},
)
UPPER = triton_model(
    "upper",
    backend="python",
    inputs=[Tensor("ids", "TYPE_INT32", (-1,))],
    outputs=[Tensor("ids_out", "TYPE_INT32", (-1,))],
    instance_groups=CPU,
    repository=REPOSITORY,
    versions={1: "upper/1"},
)
DETOKENIZER = triton_model(
    "detokenizer",
    backend="python",
    inputs=[Tensor("ids", "TYPE_INT32", (-1,))],
    outputs=[Tensor("text", "TYPE_STRING", (1,))],
    instance_groups=CPU,
    repository=REPOSITORY,
    versions={1: "detokenizer/1"},
)

SPELL = triton_ensemble(
    "spell",
    steps=[
        EnsembleStep(TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "_ids"}),
        EnsembleStep(
            GENERATOR,
            inputs={"ids": "_ids", "max_tokens": "max_tokens"},
            outputs={"ids_out": "_tokens"},
        ),
        EnsembleStep(DETOKENIZER, inputs={"ids": "_tokens"}, outputs={"text": "text_output"}),
    ],
    inputs=[Tensor("text_input", "TYPE_STRING", (1,)), Tensor("max_tokens", "TYPE_INT32", (1,))],
    outputs=[Tensor("text_output", "TYPE_STRING", (1,))],
)
SHOUT = triton_ensemble(
    "shout-ensemble",
    steps=[
        EnsembleStep(
            TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "_ids", "count": "length"}
        ),
        EnsembleStep(UPPER, inputs={"ids": "_ids"}, outputs={"ids_out": "_upper"}),
        EnsembleStep(DETOKENIZER, inputs={"ids": "_upper"}, outputs={"text": "text_output"}),
    ],
    inputs=[Tensor("text_input", "TYPE_STRING", (1,))],
    outputs=[Tensor("text_output", "TYPE_STRING", (1,)), Tensor("length", "TYPE_INT32", (1,))],
)
SERVER = triton_serving(
    "ensemble-triton",
    [SPELL, SHOUT, *step_models(SPELL, SHOUT)],
    cpu="1",
    memory="1Gi",
)


@rtflow.stage(image="ghcr.io/acme/chat:1.0")
def answer(generated: dict[str, Any], question: str) -> dict[str, Any]:
    return {"question": question, "text": generated["text"], "tokens": generated["tokens"]}


@rtflow.pipeline(name="ensemble-generation", namespace="llm")
def ensemble_generation(question: str) -> None:
    generated = rtflow.generate(SERVER, SPELL, question, max_tokens=8, name="reply", timeout="30s")
    answer(generated, question)


@rtflow.stage(image="ghcr.io/acme/text:1.0")
def summary(upper: list[str], length: list[int]) -> str:
    return f"{upper[0]} ({length[0]} characters)"


@rtflow.pipeline(name="ensemble-shout")
def ensemble_shout(message: str) -> None:
    shouted = rtflow.infer(SERVER, SHOUT, {"text_input": message}, name="shout")
    summary(upper=shouted.output("text_output"), length=shouted.output("length"))


@rtflow.pipeline(
    name="ensemble-stream",
    namespace="llm",
    latency_budget_ms=10_000,
    triggers=[
        rtflow.kafka(
            "questions",
            brokers=["kafka:9092"],
            consumer_group="ensemble",
            inputs={"question": "body.question", "asked": "body.id"},
        )
    ],
    stream=rtflow.Stream(
        image="ghcr.io/acme/chat/stream:1.0@sha256:" + "c0ffee" * 10 + "c0ff",
        results_topic="generated",
    ),
)
def ensemble_stream(question: str, asked: str) -> None:
    generated = rtflow.generate(SERVER, SPELL, question, max_tokens=8, name="reply", timeout="30s")
    answer(generated, question)
