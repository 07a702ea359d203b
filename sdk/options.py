"""Option values a user passes to stages and pipelines.

Plain records with no checking of their own: everything is validated together when the IR is
built, so an error can name the pipeline and stage it belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff between retries: ``duration`` * ``factor`` ** n, capped."""

    duration: str = "1s"
    factor: int = 2
    max_duration: str | None = None


@dataclass(frozen=True)
class Retry:
    """Argo retry strategy. ``policy``: Always, OnFailure, OnError or OnTransientError."""

    limit: int = 3
    policy: str = "OnFailure"
    backoff: Backoff | None = None


@dataclass(frozen=True)
class Secret:
    """A credential from a key of a Kubernetes Secret: the only way to pass one to a stage.

    By default the key is mounted as a read-only file (``/var/run/secrets/rtflow/<secret>/<key>``,
    mode 0440) and ``<env>_FILE`` holds its path; a Python-function stage also finds the value
    in ``<env>`` (rtflow's runtime reads the file before the stage's module is imported); a
    container stage reads the file itself. ``as_env=True`` puts the value in ``<env>`` instead
    (a ``secretKeyRef``), for an image that only reads the environment."""

    env: str
    secret: str
    key: str
    as_env: bool = False


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True)
class Param:
    """A declared container-stage input, when a bare type is not enough (a default, a text)."""

    type: Any
    default: Any = NO_DEFAULT
    description: str | None = None


@dataclass(frozen=True)
class Output:
    """A declared container-stage output and the file the container writes it to."""

    type: Any
    path: str | None = None
