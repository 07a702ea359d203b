"""Pipelines that stream tokens from a decoupled model on a real Triton.

The model (``word_stream/1/model.py``) echoes its prompt back word by word, one response per
word after a small delay, as an LLM backend streams tokens; a prompt holding ``FAIL`` breaks
mid-stream.
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_image, triton_serving
from rtflow.gpu.tensors import Tensor

WORDS = triton_model(
    "word-stream",
    backend="python",
    max_batch_size=0,
    decoupled=True,
    inputs=[Tensor("text_input", "TYPE_STRING", (1,)), Tensor("max_tokens", "TYPE_INT32", (1,))],
    outputs=[Tensor("text_output", "TYPE_STRING", (1,))],
    instance_groups=[{"count": 1, "kind": "KIND_CPU"}],
    repository="pvc://triton-models/llm",
    versions={1: "word_stream/1"},
    parameters={"delay_ms": 30},
)
SERVER = triton_serving(
    "llm-triton",
    [WORDS],
    cpu="1",
    memory="1Gi",
    # Pinned, as a cluster should run it (a fictional digest: no registry is reached).
    image=f"{triton_image('24.10')}@sha256:6f7899db5e3e582628d1dcca45f90f36291163095cd8166bb7ab6f59d50a43d5",
)


@rtflow.stage(image="ghcr.io/acme/chat:1.0")
def answer(generated: dict[str, Any], question: str) -> dict[str, Any]:
    """What a downstream stage does with a generation: its text and its time to first token."""
    return {
        "question": question,
        "text": generated["text"],
        "tokens": len(generated["tokens"]),
        "ttft_ms": generated["ttft_ms"],
        "total_ms": generated["total_ms"],
    }


@rtflow.pipeline(name="generation", namespace="llm")
def generation(question: str) -> None:
    generated = rtflow.generate(SERVER, WORDS, question, max_tokens=8, name="reply", timeout="20s")
    answer(generated, question)
