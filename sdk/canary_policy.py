"""``rtflow.canary``: how a new version of a Triton model is rolled out, and when it is rolled back.

``triton_model(..., versions=[1, 2], version_policy=VersionPolicy.specific(1),
canary=rtflow.canary(steps=(10, 50, 100), window="60s", min_requests=100,
max_error_rate=0.01, max_p99_ms=None))`` declares that the model's versions change by a canary:
a candidate version (announced by an event, see :func:`rtflow.canary_rollout`) first gets
``steps[0]`` percent of the stream plane's events, then each next step's share after a
``window`` in which it answered at least ``min_requests`` with an error rate of at most
``max_error_rate`` (and, when given, a p99 latency of at most ``max_p99_ms``); past the last
step (always 100) it becomes the stable version. A window that fails rolls it back at once.

**The stable version** is the one the declaration serves: the only version of a ``specific``
version policy, else the highest of ``versions``. Compile gives such a model the version policy
``specific {versions: [stable]}``: the controller widens it to ``[stable, candidate]`` through
Triton's repository API for the length of a rollout, and narrows it again after. Versions must
be numbered in the declaration, since every request names its version: an unversioned request
goes to the highest version Triton has loaded, which during a rollout is the candidate.

**Every request built from the declaration names the stable version** (:func:`declared_stable`):
the workflow plane's http step calls ``/v2/models/<m>/versions/<stable>/infer`` and its gRPC
step asks for ``model_version`` ``<stable>``, in a cluster and in ``rtflow run --local``, so
no workflow-plane request reaches an unvetted candidate.

**After a promotion** the state topic (:mod:`rtflow.stages.rollout_state`) says which version
is stable, while the compiled declaration still names the old one: the workflow plane calls it,
and a Triton pod that restarts loads only it. So a promotion keeps the declared version loaded
beside the promoted one, the stream workers fall back to the declared version when Triton does
not have the state's (a restarted pod), and the promoted state says what to change in Git to
finish (``declare <m> with versions=[<new>] (stable <new>) and recompile``).

Validation happens here, once, as for every declaration; :mod:`rtflow.gpu.models` only holds
the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from rtflow.errors import DefinitionError
from rtflow.quantity import parse_go_duration

if TYPE_CHECKING:
    from rtflow.gpu.repository import ModelVersion
    from rtflow.gpu.scheduling import VersionPolicy

__all__ = ["DEFAULT_TOPIC", "Canary", "canary", "canary_version_policy", "declared_stable"]

DEFAULT_TOPIC: Final = "rtflow-rollouts"
_TOPIC_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True)
class Canary:
    """A validated canary policy (build it with :func:`canary`)."""

    steps: tuple[int, ...] = (10, 50, 100)
    """Percent of the stream plane's events the candidate gets, step by step; the last is 100."""
    window: str = "60s"
    window_seconds: float = 60.0
    min_requests: int = 100
    """Requests the candidate must have answered in a window for a verdict."""
    max_error_rate: float = 0.01
    max_p99_ms: float | None = None
    topic: str = DEFAULT_TOPIC
    """The compacted Kafka topic holding each model's rollout state (and the workers' counts)."""

    def as_json(self) -> dict[str, Any]:
        """What the controller's stages take as their ``policy`` input."""
        return {
            "steps": list(self.steps),
            "window_seconds": self.window_seconds,
            "min_requests": self.min_requests,
            "max_error_rate": self.max_error_rate,
            "max_p99_ms": self.max_p99_ms,
            "topic": self.topic,
        }


def _fail(problem: str, fix: str, field: str) -> DefinitionError:
    return DefinitionError(f"rtflow.canary(): {problem}", fix=fix, field=field)


def _steps(steps: object) -> tuple[int, ...]:
    fix = "give increasing percents ending at 100, e.g. steps=(10, 50, 100)"
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or not steps:
        raise _fail(f"steps {steps!r} is not a sequence of percents", fix, "steps")
    checked: list[int] = []
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or not 0 < step <= 100:
            raise _fail(f"step {step!r} is not a whole percent in (0, 100]", fix, "steps")
        if checked and step <= checked[-1]:
            raise _fail(f"steps {list(steps)} do not strictly increase", fix, "steps")
        checked.append(step)
    if checked[-1] != 100:
        raise _fail(f"the last step is {checked[-1]}, not 100", fix, "steps")
    return tuple(checked)


def canary(
    steps: Sequence[int] = (10, 50, 100),
    *,
    window: str = "60s",
    min_requests: int = 100,
    max_error_rate: float = 0.01,
    max_p99_ms: float | None = None,
    topic: str = DEFAULT_TOPIC,
) -> Canary:
    """A canary policy for ``triton_model(..., canary=...)`` (see the module's docstring)."""
    checked = _steps(steps)
    try:
        seconds = parse_go_duration(window) if isinstance(window, str) else Decimal(-1)
    except ValueError:
        seconds = Decimal(-1)
    if seconds <= 0:
        raise _fail(
            f"window {window!r} is not a positive duration",
            "write a Go duration such as '30s' or '5m'",
            "window",
        )
    if isinstance(min_requests, bool) or not isinstance(min_requests, int) or min_requests < 1:
        raise _fail(
            f"min_requests {min_requests!r} is not a positive whole number",
            "give the requests a window needs for a verdict, e.g. min_requests=100",
            "min_requests",
        )
    if (
        isinstance(max_error_rate, bool)
        or not isinstance(max_error_rate, (int, float))
        or not 0 <= max_error_rate < 1
    ):
        raise _fail(
            f"max_error_rate {max_error_rate!r} is not a fraction in [0, 1)",
            "give the highest tolerated share of failed requests, e.g. 0.01 for 1%",
            "max_error_rate",
        )
    if max_p99_ms is not None and (
        isinstance(max_p99_ms, bool) or not isinstance(max_p99_ms, (int, float)) or max_p99_ms <= 0
    ):
        raise _fail(
            f"max_p99_ms {max_p99_ms!r} is not a positive number of milliseconds",
            "give the highest tolerated p99 latency, e.g. max_p99_ms=50, or None",
            "max_p99_ms",
        )
    if not isinstance(topic, str) or not topic or len(topic) > 249 or set(topic) - _TOPIC_CHARS:
        raise _fail(
            f"topic {topic!r} is not a Kafka topic name",
            "use letters, digits, '.', '_' or '-' (at most 249)",
            "topic",
        )
    return Canary(
        steps=checked,
        window=window,
        window_seconds=float(seconds),
        min_requests=min_requests,
        max_error_rate=float(max_error_rate),
        max_p99_ms=None if max_p99_ms is None else float(max_p99_ms),
        topic=topic,
    )


def canary_version_policy(
    model: str,
    policy: object,
    versions: Sequence[ModelVersion],
    version_policy: VersionPolicy | None,
    *,
    decoupled: bool = False,
) -> VersionPolicy:
    """The version policy compile gives a model under canary: its stable version alone."""
    from rtflow.gpu.scheduling import VersionPolicy

    if not isinstance(policy, Canary):
        raise DefinitionError(
            f"model {model!r}: canary {policy!r} is not a canary policy",
            fix="use canary=rtflow.canary(...)",
            field="canary",
        )
    if decoupled:  # the stream plane's generations are not routed by version (yet)
        raise DefinitionError(
            f"model {model!r}: a decoupled (streaming) model cannot be rolled out by a canary",
            fix="drop canary=, and roll the model's versions out by redeploying",
            field="canary",
        )
    if not versions:
        raise DefinitionError(
            f"model {model!r}: a canary needs numbered versions",
            fix="declare versions=[1, 2] (every request names its version during a rollout)",
            field="versions",
        )
    if version_policy is not None and version_policy.kind == "specific":
        if len(version_policy.versions) != 1:
            raise DefinitionError(
                f"model {model!r}: under a canary Triton serves one stable version, "
                f"not {list(version_policy.versions)}",
                fix="give VersionPolicy.specific(<stable version>); the canary adds the candidate",
                field="version_policy",
            )
        return version_policy
    return VersionPolicy.specific(max(v.number for v in versions))


def declared_stable(model: object) -> int | None:
    """The stable version a model under canary is declared with (the single version of its
    compiled ``specific`` policy); None for a model without ``canary=``. Every request built
    from the declaration asks for it by number: unversioned, Triton would answer with the
    highest version loaded, which during a rollout is the candidate."""
    policy = getattr(model, "version_policy", None)
    if getattr(model, "canary", None) is None or policy is None or not policy.versions:
        return None
    return int(policy.versions[0])
