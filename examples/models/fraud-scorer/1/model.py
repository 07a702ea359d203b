"""Fraud scorer: a Triton Python-backend model, logistic regression over five features.

Input ``features``: FP32 [N, 5], columns in the order (log_amount, foreign, night,
card_not_present, new_merchant). Output ``risk``: FP32 [N, 1], the probability that the
transaction is fraud. The same weights as the ``score`` stage of examples/fraud_detection.py.

Its config.pbtxt is not kept here: rtflow generates it from the model's declaration
(examples/models/fraud_scorer.py). With dynamic batching Triton hands several requests to one
``execute`` call; they are scored as one matrix product and split back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]

FEATURES = ("log_amount", "foreign", "night", "card_not_present", "new_merchant")
WEIGHTS = np.array([0.9, 1.4, 0.8, 1.1, 1.3], dtype=np.float64)
BIAS = -7.0


def risk(features: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.float32]]:
    """Logistic score, computed in float64 and rounded once to float32, shape [N, 1]."""
    z = features.astype(np.float64) @ WEIGHTS + BIAS
    scores: np.ndarray[Any, np.dtype[np.float32]] = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
    return scores.reshape(-1, 1)


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        batches = [
            pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
            for request in requests
        ]
        scores = risk(np.concatenate(batches)) if batches else np.empty((0, 1), np.float32)
        responses = []
        start = 0
        for batch in batches:
            rows = scores[start : start + len(batch)]
            start += len(batch)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("risk", rows)]))
        return responses
