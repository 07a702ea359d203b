"""The canary tests' scorer, version 1 (Triton Python backend): healthy, the stable version.

Input ``features``: TYPE_FP32 [N, 2]. Outputs ``which``: INT64 [N, 1], this version's number;
``total``: FP32 [N, 1], the features' sum times it. Every request is answered on its own.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

VERSION = 1


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
            rows = features.shape[0]
            which = np.full((rows, 1), VERSION, dtype=np.int64)
            total = (features.sum(axis=1, keepdims=True) * VERSION).astype(np.float32)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("which", which), pb_utils.Tensor("total", total)]
                )
            )
        return responses
