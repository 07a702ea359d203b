"""The routing tests' 'small' scorer (Triton Python backend): tells which model answered.

Input ``features``: TYPE_FP32 [N, 2]. Outputs ``which``: INT64 [N, 1], always 1 (this model's
mark); ``total``: FP32 [N, 1], the features' sum times 1. Every request is answered on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

MARK = 1


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
            rows = features.shape[0]
            which = np.full((rows, 1), MARK, dtype=np.int64)
            total = (features.sum(axis=1, keepdims=True) * MARK).astype(np.float32)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("which", which), pb_utils.Tensor("total", total)]
                )
            )
        return responses
