"""A decoupled Triton Python-backend model that streams tokens, as an LLM backend does.

Inputs (no batch dimension, as the vLLM and TensorRT-LLM backends declare theirs):
``text_input`` TYPE_STRING [1], the prompt; ``max_tokens`` TYPE_INT32 [1]. Output
``text_output`` TYPE_STRING [1]: one response per token, each the next word of the prompt
echoed back (with the space before it, so the tokens joined are the text), after a small delay
(the model parameter ``delay_ms``, 20 by default), at most ``max_tokens`` of them; then an empty
final response flagged COMPLETE_FINAL. A prompt holding the word ``FAIL`` streams the words
before it and then answers an error, as a backend that breaks mid-generation does. A client
that cancels (or goes away) stops the stream: the next token is not computed. When the
environment names a file (``WORD_STREAM_LOG``), each request appends how it ended there
(``done <n>`` or ``cancelled <n>``, n the tokens sent), so a test sees a cancellation arrive.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        policy = pb_utils.using_decoupled_model_transaction_policy(config)
        if not policy:
            raise pb_utils.TritonModelException("word_stream must be decoupled")
        parameters = config.get("parameters", {})
        self.delay = float(parameters.get("delay_ms", {}).get("string_value", "20")) / 1000.0
        self.threads: list[threading.Thread] = []
        self.log = os.environ.get("WORD_STREAM_LOG")
        self.log_lock = threading.Lock()

    def _record(self, line: str) -> None:
        if self.log:
            with self.log_lock, open(self.log, "a", encoding="utf-8") as log:
                log.write(line + "\n")

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
            text = prompt.reshape(-1)[0].decode("utf-8")
            budget = int(limit.reshape(-1)[0])
            words = text.split()
            for index, word in enumerate(words[:budget]):
                if word == "FAIL":
                    error = pb_utils.TritonError(f"word_stream: failed at token {index}")
                    sender.send(
                        pb_utils.InferenceResponse(error=error),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                    )
                    return
                time.sleep(self.delay)
                if request.is_cancelled():
                    self._record(f"cancelled {index}")
                    sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                    return
                token = (word if index == 0 else " " + word).encode("utf-8")
                out = pb_utils.Tensor("text_output", np.array([token], dtype=np.object_))
                sender.send(pb_utils.InferenceResponse([out]))
            self._record(f"done {min(budget, len(words))}")
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # the stream must end, or the client waits forever
            error = pb_utils.TritonError(f"word_stream: {exc}")
            sender.send(
                pb_utils.InferenceResponse(error=error),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

    def finalize(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)
