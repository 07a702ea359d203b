"""A decoupled "LLM" on token ids (Triton Python backend), as TensorRT-LLM streams tokens.

Inputs ``ids`` TYPE_INT32 [-1] (the prompt's ids) and ``max_tokens`` TYPE_INT32 [1]; output
``ids_out`` TYPE_INT32 [-1]. One response per word of the prompt (a space starts a new word
and goes with it), its ASCII letters upper-cased, at most ``max_tokens`` of them, a small
delay before each (the parameter ``delay_ms``); then an empty final response. A prompt holding
the word ``FAIL`` answers an error at that word.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        if not pb_utils.using_decoupled_model_transaction_policy(config):
            raise pb_utils.TritonModelException("generator must be decoupled")
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
            ids = pb_utils.get_input_tensor_by_name(request, "ids").as_numpy().reshape(-1)
            budget = pb_utils.get_input_tensor_by_name(request, "max_tokens").as_numpy()
            words: list[list[int]] = []
            for code in ids.tolist():
                if not words or (code == ord(" ") and words[-1] != [ord(" ")]):
                    words.append([])
                words[-1].append(code)
            for index, word in enumerate(words[: int(budget.reshape(-1)[0])]):
                if "".join(chr(c) for c in word).strip() == "FAIL":
                    error = pb_utils.TritonError(f"generator: failed at token {index}")
                    sender.send(
                        pb_utils.InferenceResponse(error=error),
                        flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
                    )
                    return
                time.sleep(self.delay)
                if request.is_cancelled():
                    break
                upper = [c - 32 if ord("a") <= c <= ord("z") else c for c in word]
                out = pb_utils.Tensor("ids_out", np.array(upper, dtype=np.int32))
                sender.send(pb_utils.InferenceResponse([out]))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception as exc:  # the stream must end, or the client waits forever
            sender.send(
                pb_utils.InferenceResponse(error=pb_utils.TritonError(f"generator: {exc}")),
                flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL,
            )

    def finalize(self) -> None:
        for thread in self.threads:
            thread.join(timeout=5)
