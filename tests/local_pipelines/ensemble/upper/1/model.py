"""A one-answer "model" on token ids (Triton Python backend): upper-cases ASCII letters.

Input ``ids`` TYPE_INT32 [-1]; output ``ids_out`` TYPE_INT32 [-1]. No batch dimension.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "ids").as_numpy().astype(np.int32)
            lower = (ids >= ord("a")) & (ids <= ord("z"))
            out = np.where(lower, ids - 32, ids).astype(np.int32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("ids_out", out)]))
        return responses
