"""Skip-or-fail for tests that need a real component.

On a laptop without Java, Go or the Triton wheel a real-component test skips with the reason;
in CI (CI=true) the same absence is a failure, because CI must provision every component.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def component_missing(reason: str) -> NoReturn:
    """Skip locally, fail in CI: a missing real component is a provisioning bug there."""
    if in_ci():
        pytest.fail(f"CI=true but a required component is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def triton_available() -> None:
    """The Triton wheel and a numpy its Python backend takes, or skip (fail in CI)."""
    from rtflow.gpu import triton_server as ts

    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as exc:
        component_missing(str(exc))


def local_triton_for(pipeline: Any, work_dir: Path) -> Any:
    """A local Triton (not started) serving what ``pipeline``'s inference steps need, as
    ``rtflow run --local`` starts it; skips (fails in CI) without the Triton wheel."""
    from rtflow.stages.inference import local_triton_server, needs_triton

    triton_available()
    return local_triton_server(pipeline, needs_triton(pipeline), work_dir=work_dir)
