"""A toy detokenizer (Triton Python backend), the last step of the test ensembles.

Input ``ids`` TYPE_INT32 [-1]; output ``text`` TYPE_STRING [1], the characters of those code
points. No batch dimension. In a decoupled ensemble it runs once per streamed response.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            ids = pb_utils.get_input_tensor_by_name(request, "ids").as_numpy().reshape(-1)
            text = "".join(chr(int(c)) for c in ids.tolist()).encode("utf-8")
            out = pb_utils.Tensor("text", np.array([text], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse([out]))
        return responses
