"""The canary tests' scorer, version 2 (Triton Python backend): a broken candidate.

It raises for every request (as a model whose new weights crash would): the client gets an
error status for each, and Triton counts them in ``nv_inference_request_failure``.
"""

from __future__ import annotations

from typing import Any


class TritonPythonModel:
    def execute(self, requests: list[Any]) -> list[Any]:
        raise RuntimeError("version 2 is broken")
