"""Pipelines that stream tokens from a decoupled model on a real Triton.

The model (``word_stream/1/model.py``) echoes its prompt back word by word, one response per
word after a small delay, as an LLM backend streams tokens; a prompt holding ``FAIL`` breaks
mid-stream.
"""

from __future__ import annotations

from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_serving
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
SERVER = triton_serving("llm-triton", [WORDS], cpu="1", memory="1Gi")
