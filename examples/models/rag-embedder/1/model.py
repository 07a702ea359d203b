"""RAG embedder: a Triton Python-backend text-embedding model for the conversational RAG
example, on CPU and without weights (a stand-in for a sentence-embedding model).

Input ``text``: TYPE_STRING [N, 1]. Output ``embedding``: FP32 [N, 32], a hashed bag of words
(lower case, stop words dropped, a trailing "s" cut), L2-normalized, so texts that share words
are near in cosine distance. ``examples/local/rag_database.py`` embeds the handbook's documents
with the same function (``embed`` is copied there, as the fraud scorer's weights are).
Its config.pbtxt is generated from the declaration in examples/conversational_rag.py.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

DIMENSIONS = 32
STOP = frozenset((
    "a", "an", "and", "are", "at", "be", "can", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "my", "of", "on", "or", "our", "the", "to", "what", "when", "where", "which",
    "who", "why", "will", "with", "you", "your",
))  # fmt: skip


def embed(text: str) -> list[float]:
    vector = [0.0] * DIMENSIONS
    for raw in text.lower().split():
        word = raw.strip(".,;:!?()\"'")
        if not word or word in STOP:
            continue
        if len(word) > 3 and word.endswith("s"):
            word = word[:-1]
        vector[zlib.crc32(word.encode("utf-8")) % DIMENSIONS] += 1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
            rows = [embed(item.decode("utf-8")) for item in text.reshape(-1)]
            vectors = np.array(rows, dtype=np.float32).reshape(text.shape[0], DIMENSIONS)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("embedding", vectors)]))
        return responses
