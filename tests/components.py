"""Skip-or-fail for tests that need a real component.

On a laptop without Java, Go or the Triton wheel a real-component test skips with the reason;
in CI (CI=true) the same absence is a failure, because CI must provision every component.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def component_missing(reason: str) -> NoReturn:
    """Skip locally, fail in CI: a missing real component is a provisioning bug there."""
    if in_ci():
        pytest.fail(f"CI=true but a required component is missing: {reason}", pytrace=False)
    pytest.skip(reason)
