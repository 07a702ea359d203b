"""A tiny text-embedding Triton Python-backend model for the retrieval tests (CPU, no weights).

Input ``text``: TYPE_STRING [N, 1]. Output ``embedding``: FP32 [N, 3], a bag of words over
three topics (refunds, shipping, anything else; stop words left out), L2-normalized, so a
query's nearest documents are predictable: "when is my refund paid" -> [1, 0, 0].
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

STOP = {"a", "and", "is", "my", "of", "the", "when", "where"}
TOPICS = (
    {"refund", "refunds", "refunded", "money", "paid", "pay", "rembourse"},
    {"ship", "shipping", "shipped", "delivery", "parcel", "deliver"},
)


def embed(text: str) -> list[float]:
    counts = [0.0, 0.0, 0.0]
    for word in text.lower().replace("?", " ").replace(".", " ").split():
        if word in STOP:
            continue
        topic = next((i for i, words in enumerate(TOPICS) if word in words), 2)
        counts[topic] += 1.0
    norm = math.sqrt(sum(c * c for c in counts)) or 1.0
    return [c / norm for c in counts]


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
            rows = [embed(item.decode("utf-8")) for item in text.reshape(-1)]
            vectors = np.array(rows, dtype=np.float32).reshape(text.shape[0], 3)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("embedding", vectors)]))
        return responses
