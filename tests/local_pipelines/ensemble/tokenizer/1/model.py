"""A toy tokenizer (Triton Python backend), the first step of the test ensembles.

Input ``text`` TYPE_STRING [1]; outputs ``ids`` TYPE_INT32 [-1], one id per character (its
code point), and ``count`` TYPE_INT32 [1], how many. No batch dimension.
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
            decoded = text.reshape(-1)[0].decode("utf-8")
            ids = np.array([ord(c) for c in decoded], dtype=np.int32)
            count = np.array([len(ids)], dtype=np.int32)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("ids", ids), pb_utils.Tensor("count", count)]
                )
            )
        return responses
