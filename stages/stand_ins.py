"""Python stand-ins for stages a local run cannot execute (containers without Docker), or for
any stage a test wants to replace.

A stand-in is called in the run's own process with the decoded inputs as keyword arguments and
returns the value of a stage's single output, or for several outputs a mapping (or NamedTuple)
of output name to value; raising :class:`BadInput` marks a bad input. Its signature is checked
against the stage's inputs before the run starts, so a wrong one is a one-line error at once,
not a failure retried on every event. From the command line a stand-in is
``--stand-in STAGE=MODULE:FUNCTION``, or ``--stand-ins MODULE_OR_FILE``: every function in it
named after a stage (``block_card`` for ``block-card``).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from rtflow import ir
from rtflow.param_types import decode, encode
from rtflow.stages.runtime import BadInput
from rtflow.stages.workers import Invocation

__all__ = [
    "Invoker",
    "StandIn",
    "StandInError",
    "check_signature",
    "from_module",
    "from_spec",
    "stand_in_invoker",
]

StandIn = Callable[..., Any]


class StandInError(RuntimeError):
    """A stand-in that cannot be loaded or cannot take its stage's inputs (one line)."""


class Invoker(Protocol):
    def __call__(
        self, raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation: ...


def _import(location: str) -> ModuleType:
    """A module by name, or a ``.py`` file by path (its folder goes on sys.path, as the
    pipeline loader does, so it may import its neighbours)."""
    if location.endswith(".py") or "/" in location:
        path = Path(location)
        if not path.is_file():
            raise StandInError(f"stand-in module {location!r} is not a file")
        sys.path.insert(0, str(path.resolve().parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(location)
    except ImportError as exc:
        raise StandInError(f"stand-in module {location!r} cannot be imported: {exc}") from None


def _callable(target: Any) -> StandIn:
    function = getattr(target, "function", None) or target  # a decorated stage: its function
    if not callable(function):
        raise StandInError(f"{target!r} is not callable")
    return function  # type: ignore[no-any-return]


def from_spec(spec: str) -> tuple[str, StandIn]:
    """``STAGE=MODULE:FUNCTION`` (MODULE may be a ``.py`` path) -> (stage, function)."""
    name, sep, reference = spec.partition("=")
    module, colon, attribute = reference.rpartition(":")
    if not sep or not colon or not module or not attribute:
        raise StandInError(f"--stand-in {spec!r} is not STAGE=MODULE:FUNCTION")
    target: Any = _import(module)
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise StandInError(f"--stand-in {spec!r}: {module} has no {attribute!r}")
        target = getattr(target, part)
    return name, _callable(target)


def from_module(location: str, stages: list[str]) -> dict[str, StandIn]:
    """Every public function of the module named after one of ``stages`` (dashes as
    underscores). A module that stands in for none of them is an error: a typo, not a no-op."""
    module = _import(location)
    found: dict[str, StandIn] = {}
    for stage in stages:
        attribute = stage.replace("-", "_")
        if callable(getattr(module, attribute, None)):
            found[stage] = _callable(getattr(module, attribute))
    if not found:
        raise StandInError(
            f"--stand-ins {location}: no function named after a stage "
            f"({', '.join(s.replace('-', '_') for s in stages)})"
        )
    return found


def check_signature(stage: ir.Stage, function: StandIn) -> None:
    """Refuse a stand-in that cannot be called with the stage's inputs, naming both."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check
        return
    inputs = [p.name for p in stage.inputs]
    try:
        signature.bind(**dict.fromkeys(inputs))
    except TypeError as exc:
        where = getattr(function, "__module__", "?") + ":" + getattr(function, "__qualname__", "?")
        raise StandInError(
            f"stand-in for stage {stage.name!r} ({where}{signature}) cannot take its inputs "
            f"({', '.join(inputs) or 'none'}): {exc}; name its parameters after them"
        ) from None


def stand_in_invoker(stage: ir.Stage, function: StandIn) -> Invoker:
    types = {p.name: p.type for p in stage.inputs}
    outputs = {o.name: o.type for o in stage.outputs}

    def invoke(
        raw: Mapping[str, str], timeout: float | None, context: Mapping[str, str]
    ) -> Invocation:
        started = time.perf_counter()

        def done(
            status: Literal["ok", "bad_input", "failed"],
            out: dict[str, str] | None = None,
            error: str | None = None,
        ) -> Invocation:
            ms = (time.perf_counter() - started) * 1000
            if status == "ok" and timeout is not None and ms > timeout * 1000:
                return Invocation("timeout", error=f"took {ms / 1000:.1f} s > {timeout:g} s", ms=ms)
            return Invocation(status, out or {}, error, ms, ms)

        try:
            kwargs: dict[str, Any] = {}
            for name, text in raw.items():
                if name not in types:
                    raise BadInput(f"unknown input {name!r}")
                try:
                    kwargs[name] = decode(text, types[name])
                except ValueError as exc:
                    raise BadInput(f"input {name!r}: {exc}") from None
            result = function(**kwargs)
            texts: dict[str, str] = {}
            if len(outputs) == 1:
                result = {next(iter(outputs)): result}
            for name, out_type in outputs.items():
                if isinstance(result, Mapping):
                    value = result.get(name)
                else:
                    value = getattr(result, name, None)
                if not out_type.accepts_value(value):
                    raise TypeError(f"stand-in output {name!r} is not a {out_type}: {value!r}")
                texts[name] = encode(value)
            return done("ok", texts)
        except BadInput as exc:
            return done("bad_input", error=str(exc))
        except Exception as exc:
            return done("failed", error=f"{type(exc).__name__}: {exc}")

    return invoke
