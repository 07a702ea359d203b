"""Stages: the units a pipeline is made of.

``@rtflow.stage`` wraps a Python function that will run inside a container through the stage
runtime; ``rtflow.container`` declares any image with a command. Both give a ``StageDef``. Called
inside a pipeline function, a StageDef records a task and returns a handle to its outputs; called
anywhere else, a function stage is just the function, so it can be unit-tested as is.

The decorator is typed to return the function's own signature: inside a pipeline the handles stand
in for the values they will carry, so a pipeline type-checks as ordinary Python.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar, cast, overload

from rtflow.errors import RtflowError
from rtflow.options import Output, Param, Retry, Secret
from rtflow.recording import current_recorder

P = ParamSpec("P")
R = TypeVar("R")


class ContainerStage(Protocol):
    """What ``rtflow.container`` returns. Called inside a pipeline with its inputs by name, it
    records a step and stands for its outputs: ``Any``, since they are declared by the
    ``outputs=`` mapping at run time, not by a signature mypy can read (a function stage is
    typed by its function's own)."""

    def __call__(self, **inputs: Any) -> Any: ...


@dataclass(frozen=True, eq=False)
class StageOptions:
    """Everything about how a stage runs, shared by function and container stages."""

    image: str | None = None
    cpu: str | int | float | None = None
    memory: str | int | None = None
    cpu_limit: str | int | float | None = None
    memory_limit: str | int | None = None
    retry: Retry | None = None
    timeout: int | str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    secrets: Sequence[Secret] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    description: str | None = None


@dataclass(eq=False)
class StageDef:
    """A stage as declared. Identity matters: the same StageDef used twice is one template."""

    name: str | None
    options: StageOptions
    function: Callable[..., Any] | None = None
    command: Sequence[str] | None = None
    args: Sequence[str] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def display_name(self) -> str:
        if self.name is not None:
            return self.name
        if self.function is not None:
            return self.function.__name__
        return "<unnamed>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        recorder = current_recorder()
        if recorder is not None:
            return recorder.call(self, args, kwargs)
        if self.function is None:
            raise RtflowError(
                f"container stage {self.display_name!r} can only be called inside a pipeline"
            )
        return self.function(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<rtflow stage {self.display_name}>"


@overload
def stage(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def stage(
    *,
    name: str | None = None,
    image: str | None = None,
    cpu: str | int | float | None = None,
    memory: str | int | None = None,
    cpu_limit: str | int | float | None = None,
    memory_limit: str | int | None = None,
    retry: Retry | None = None,
    timeout: int | str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[Secret] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str | None = None,
    description: str | None = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def stage(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    image: str | None = None,
    cpu: str | int | float | None = None,
    memory: str | int | None = None,
    cpu_limit: str | int | float | None = None,
    memory_limit: str | int | None = None,
    retry: Retry | None = None,
    timeout: int | str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[Secret] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str | None = None,
    description: str | None = None,
) -> Any:
    """Declare a Python function as a stage that runs in ``image`` through the stage runtime.

    Inputs and outputs come from the annotations: parameters typed str, int, float, bool, dict
    or list[...]; a return annotation of one of those is the output ``result``, a NamedTuple
    gives one output per field, ``None`` gives none.
    """
    options = StageOptions(
        image=image,
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        retry=retry,
        timeout=timeout,
        env=dict(env or {}),
        secrets=tuple(secrets),
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
        service_account=service_account,
        description=description,
    )

    def wrap(function: Callable[..., Any]) -> Any:
        if not callable(function):
            raise TypeError("@rtflow.stage decorates a function")
        definition = StageDef(name=name, options=options, function=function)
        definition.__doc__ = function.__doc__
        definition.__wrapped__ = function  # type: ignore[attr-defined]
        return definition

    if fn is not None:
        return wrap(fn)
    return wrap


def container(
    name: str,
    *,
    image: str,
    command: Sequence[str] | None = None,
    args: Sequence[str] = (),
    inputs: Mapping[str, type | Param | Any] | None = None,
    outputs: Mapping[str, type | Output | Any] | None = None,
    cpu: str | int | float | None = None,
    memory: str | int | None = None,
    cpu_limit: str | int | float | None = None,
    memory_limit: str | int | None = None,
    retry: Retry | None = None,
    timeout: int | str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[Secret] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str | None = None,
    description: str | None = None,
) -> ContainerStage:
    """Declare a stage from any container image.

    ``command`` and ``args`` may name inputs as ``{input}`` (``{{`` for a literal brace); each
    output is read from ``Output.path`` (default ``/tmp/rtflow/outputs/<name>``) after the
    container exits.
    """
    options = StageOptions(
        image=image,
        cpu=cpu,
        memory=memory,
        cpu_limit=cpu_limit,
        memory_limit=memory_limit,
        retry=retry,
        timeout=timeout,
        env=dict(env or {}),
        secrets=tuple(secrets),
        labels=dict(labels or {}),
        annotations=dict(annotations or {}),
        service_account=service_account,
        description=description,
    )
    definition = StageDef(
        name=name,
        options=options,
        command=tuple(command) if command is not None else None,
        args=tuple(args),
        inputs=dict(inputs or {}),
        outputs=dict(outputs or {}),
    )
    return definition


def configure(
    stage_fn: Callable[P, R],
    /,
    *,
    name: str | None = None,
    image: str | None = None,
    cpu: str | int | float | None = None,
    memory: str | int | None = None,
    retry: Retry | None = None,
    timeout: int | str | None = None,
    env: Mapping[str, str] | None = None,
    secrets: Sequence[Secret] = (),
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    service_account: str | None = None,
) -> Callable[P, R]:
    """A copy of a stage (typically a built-in) with its own name and options for one use.

    ``env``, ``labels`` and ``annotations`` are added to the stage's own, ``secrets`` appended;
    the rest replace. E.g. the Kafka publish built-in with the brokers' SASL password from a
    Secret: ``rtflow.configure(kafka_publish, name="publish-decision", secrets=[...])``.
    """
    if not isinstance(stage_fn, StageDef):
        raise TypeError(
            "rtflow.configure takes a stage made with @rtflow.stage or rtflow.container"
        )
    old = stage_fn.options
    options = StageOptions(
        image=image if image is not None else old.image,
        cpu=cpu if cpu is not None else old.cpu,
        memory=memory if memory is not None else old.memory,
        cpu_limit=old.cpu_limit,
        memory_limit=old.memory_limit,
        retry=retry if retry is not None else old.retry,
        timeout=timeout if timeout is not None else old.timeout,
        env={**old.env, **(env or {})},
        secrets=(*old.secrets, *secrets),
        labels={**old.labels, **(labels or {})},
        annotations={**old.annotations, **(annotations or {})},
        service_account=service_account if service_account is not None else old.service_account,
        description=old.description,
    )
    copy = StageDef(
        name=name if name is not None else stage_fn.name,
        options=options,
        function=stage_fn.function,
        command=stage_fn.command,
        args=stage_fn.args,
        inputs=stage_fn.inputs,
        outputs=stage_fn.outputs,
    )
    return cast(Callable[P, R], copy)
