"""A tokenizer-like Triton Python-backend model on text tensors: upper-case and length.

Input ``text``: TYPE_STRING [N, 1] (UTF-8 bytes). Outputs ``upper``: TYPE_STRING [N, 1], the
text upper-cased; ``length``: INT64 [N, 1], its length in characters (not bytes, so a test
sees that the text arrived decoded as sent). Dynamic batching may hand several requests to one
``execute``; each is answered on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
            words = [item.decode("utf-8") for item in text.reshape(-1)]
            upper = np.array([w.upper().encode("utf-8") for w in words], dtype=np.object_)
            length = np.array([len(w) for w in words], dtype=np.int64)
            responses.append(
                pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor("upper", upper.reshape(text.shape)),
                        pb_utils.Tensor("length", length.reshape(text.shape)),
                    ]
                )
            )
        return responses
