"""RAG generator: a decoupled Triton Python-backend model that answers from the retrieved
context and streams its answer word by word, as an LLM backend streams tokens (on CPU, no
weights: a stand-in for a vLLM model, which needs a GPU).

Inputs (no batch dimension, as the vLLM backend declares its own): ``text_input`` TYPE_STRING
[1], the prompt the example's ``build_prompt`` stage writes (``- <document>`` lines under
``Context:``, then ``Question: <question>``); ``max_tokens`` TYPE_INT32 [1]. Output
``text_output`` TYPE_STRING [1], one response per word (with the space before it, so the
tokens joined are the text) after ``delay_ms`` (a model parameter, 10 by default), at most
``max_tokens``; then an empty final response. The answer is the context sentence that shares
the most words with the question, or "I could not find that in the handbook." when none
does. A client that cancels stops the stream.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

UNKNOWN = "I could not find that in the handbook."
STOP = frozenset((
    "a", "an", "and", "are", "at", "be", "can", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "my", "of", "on", "or", "our", "the", "to", "what", "when", "where", "which",
    "who", "why", "will", "with", "you", "your",
))  # fmt: skip


def _words(text: str) -> set[str]:
    found = set()
    for raw in text.lower().split():
        word = raw.strip(".,;:!?()\"'")
        if word and word not in STOP:
            found.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return found


def answer(prompt: str) -> str:
    context = [ln[2:].strip() for ln in prompt.splitlines() if ln.startswith("- ")]
    question = next(
        (ln.split(":", 1)[1] for ln in prompt.splitlines() if ln.startswith("Question:")), ""
    )
    asked = _words(question)
    best, shared = UNKNOWN, 0
    for document in context:
        for sentence in document.replace("! ", ". ").split(". "):
            common = len(asked & _words(sentence))
            if common > shared:
                best, shared = sentence.strip().rstrip(".") + ".", common
    return best


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("rag-generator must be decoupled")
        parameters = config.get("parameters", {})
        self.delay = float(parameters.get("delay_ms", {}).get("string_value", "10")) / 1000.0
        self.threads: list[threading.Thread] = []

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            thread = threading.Thread(target=self._generate, args=(request,), daemon=True)
            thread.start()
            self.threads.append(thread)
        self.threads = [t for t in self.threads if t.is_alive()]
        return None

    def _generate(self, request: Any) -> None:
        sender = request.get_response_sender()
        try:
            prompt = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
            limit = pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy()
            words = answer(prompt.reshape(-1)[0].decode("utf-8")).split()
            for index, word in enumerate(words[: int(limit.reshape(-1)[0])]):
                time.sleep(self.delay)
                if request.is_cancelled():
                    break
                token = (word if index == 0 else " " + word).encode("utf-8")
                out = pb_utils.Tensor("text_output", np.array([token], dtype=np.object_))
                sender.send(pb_utils.InferenceResponse([out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # the stream must end, or the client waits forever
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"rag-generator: {exc}")),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

    def finalize(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)
