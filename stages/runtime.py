"""Run one Python-function stage the way a compiled template invokes it.

``python -m rtflow.stages run MODULE:FUNCTION --outputs-dir DIR --input name=value ...``: import
the function, decode each input by the function's own annotation, call it, write each output
to ``DIR/<name>`` (JSON, or the bare string for str) for Argo to read, and exit with a code the
template's retry expression understands: 65 for a bad input (retrying cannot help), 1 for any
other failure (retryable), 0 for success. Logs are JSON lines on stderr through :mod:`logging`
(:mod:`rtflow.stages.stage_logging`): the level, the event and trace ids of the call, and the
traceback of a failure.

The long-lived local workers (:mod:`rtflow.stages.workers`) use the same :class:`Prepared` and
:func:`Prepared.invoke`, so decoding, calling, encoding and the classification of failures are
one code path for a container on Argo and a worker on a laptop.

**SIGTERM, and what it means to the retry rule** (:class:`Termination`). A stage is terminated
from outside (a pod deleted or drained, Argo's deadline, ``rtflow run --local`` stopping): that
says nothing about its input, and the function may be in the middle of a side effect (a card
blocked, a message published). So a terminated stage does not walk away from a call it started:

* SIGTERM before the function was called (while importing, decoding): nothing happened, so the
  runtime logs ``terminated`` with ``"called": false`` and exits 143 (128 + SIGTERM). The
  retry expression retries 143 like any failure that may succeed, and that is safe: no side
  effect can have happened.
* SIGTERM while the function runs: the runtime logs ``terminating`` with ``"called": true`` and
  lets the call finish (within the pod's grace period); its outputs are written and the exit
  code is the call's own (0, 65, 1), so a call that did its side effect succeeds and is not
  retried. A log line ``terminated`` follows.
* SIGKILL at the end of the grace period cannot be caught or logged: the stage ends with 137
  and is retried, and its side effect may have happened. This is the one case where a stage may
  run twice for one event, as any at-least-once system may: a stage with side effects should
  make them idempotent (a key per event: ``context["event_id"]`` in a local run, the workflow's
  uid on Argo).

A long-lived local worker follows the same rule for the request it is serving, then exits.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import signal
import time
import traceback
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Literal

from rtflow.param_types import ParamType, decode, encode, from_annotation
from rtflow.stages import contract, secret_files, stage_logging


class BadInput(Exception):
    """The inputs do not fit the function: retrying with the same inputs cannot help.

    A stage function may raise it itself (say, a payload field it needs is missing) to say the
    same: the runtime then exits with ``contract.EXIT_BAD_INPUT`` and Argo does not retry.
    """


Status = Literal["ok", "bad_input", "failed"]
EXIT_CODES: dict[Status, int] = {
    "ok": contract.EXIT_OK,
    "bad_input": contract.EXIT_BAD_INPUT,
    "failed": contract.EXIT_FAILED,
}


@dataclass(frozen=True)
class Outcome:
    """What one invocation came to: outputs as Argo text, or why not."""

    status: Status
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    traceback: str | None = None  # of a failure: where the function raised

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


_log = logging.getLogger("rtflow.stage")
LEVELS = {
    "succeeded": logging.INFO,
    "bad_input": logging.WARNING,
    "terminating": logging.WARNING,
    "terminated": logging.WARNING,
    "failed": logging.ERROR,
}


def log(event: str, **fields: object) -> None:
    """One JSON line on stderr (:mod:`rtflow.stages.stage_logging`) at the event's level."""
    if not logging.getLogger().handlers:
        stage_logging.configure()
    _log.log(LEVELS.get(event, logging.INFO), event, extra=fields)


def log_outcome(stage: str, outcome: Outcome) -> None:
    """A call that did not succeed: its status as the event, the error, the traceback."""
    fields: dict[str, object] = {"stage": stage, "error": outcome.error}
    if outcome.traceback:
        fields["traceback"] = outcome.traceback
    log(outcome.status, **fields)


def load(reference: str) -> Callable[..., Any]:
    module_name, _, qualname = reference.partition(":")
    if not module_name or not qualname:
        raise BadInput(f"{reference!r} is not MODULE:FUNCTION")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    # A decorated stage is a StageDef; the runtime calls the function it wraps.
    return typing.cast(Callable[..., Any], getattr(target, "function", None) or target)


def parse_inputs(pairs: Sequence[str]) -> dict[str, str]:
    inputs: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise BadInput(f"--input {pair!r} is not name=value")
        inputs[name] = value
    return inputs


class Prepared:
    """A stage function with its signature and annotations read once.

    Reading annotations costs tens of microseconds; a long-lived worker pays it once at start
    instead of on every event.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        hints = typing.get_type_hints(function)
        self.parameters = inspect.signature(function).parameters
        self.input_types: dict[str, ParamType | None] = {
            name: from_annotation(hints.get(name)) for name in self.parameters
        }
        self.required = frozenset(
            name for name, p in self.parameters.items() if p.default is inspect.Parameter.empty
        )
        annotation = hints.get("return")
        self.output_fields: tuple[str, ...] | None = None
        self.output_type: ParamType | None = None
        if annotation is not None and annotation is not type(None):
            fields = getattr(annotation, "_fields", None)
            if fields is not None:
                self.output_fields = tuple(fields)
            else:
                self.output_type = from_annotation(annotation) or ParamType("str")

    def arguments(self, raw: Mapping[str, str]) -> dict[str, Any]:
        """The decoded keyword arguments; BadInput names the input that does not fit."""
        unknown = sorted(set(raw) - set(self.parameters))
        if unknown:
            raise BadInput(f"unknown input {unknown[0]!r}")
        arguments: dict[str, Any] = {}
        for name, param_type in self.input_types.items():
            if name not in raw:
                if name in self.required:
                    raise BadInput(f"input {name!r} is missing")
                continue
            if param_type is None:
                raise BadInput(f"input {name!r} has an unsupported annotation")
            try:
                arguments[name] = decode(raw[name], param_type)
            except ValueError as exc:
                raise BadInput(f"input {name!r}: {exc}") from None
        return arguments

    def outputs(self, result: Any) -> dict[str, str]:
        if self.output_fields is not None:
            return {name: encode(getattr(result, name)) for name in self.output_fields}
        if self.output_type is None:
            return {}
        if not self.output_type.accepts_value(result):
            raise TypeError(
                f"the function returned {type(result).__name__}, declared {self.output_type}"
            )
        return {"result": encode(result)}

    def invoke(self, raw: Mapping[str, str]) -> Outcome:
        """Decode, call, encode; every exception becomes a classified :class:`Outcome`."""
        try:
            return Outcome("ok", self.outputs(self.function(**self.arguments(raw))))
        except BadInput as exc:
            return Outcome("bad_input", error=str(exc))
        except Exception as exc:
            return Outcome(
                "failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
            )


def prepare(reference: str) -> Prepared | Outcome:
    """Import and inspect a stage, or the classified reason it cannot be."""
    try:
        return Prepared(load(reference))
    except BadInput as exc:
        return Outcome("bad_input", error=str(exc))
    except Exception as exc:
        return Outcome(
            "failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc()
        )


EXIT_TERMINATED = 128 + signal.SIGTERM


class Termination:
    """SIGTERM handling of a stage process (see the module docstring): exit at once while no
    call runs, else let the call finish and exit after it. Install on the main thread."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.calling = False
        self.requested = False
        self.since: float | None = None

    def install(self) -> Termination:
        signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        self.since = time.monotonic()
        if not self.calling:
            log("terminated", stage=self.stage, signal="SIGTERM", called=False, retry_safe=True)
            raise SystemExit(EXIT_TERMINATED)
        log(
            "terminating",
            stage=self.stage,
            signal="SIGTERM",
            called=True,
            note="the call runs to its end; its outcome, not the signal, decides a retry",
        )

    def call(self, prepared: Prepared, raw: Mapping[str, str]) -> Outcome:
        self.calling = True
        try:
            return prepared.invoke(raw)
        finally:
            self.calling = False

    def finished(self, outcome: Outcome) -> None:
        """After a call: log the end of a termination that came during it."""
        if not self.requested:
            return
        waited = round(time.monotonic() - (self.since or time.monotonic()), 3)
        log("terminated", stage=self.stage, signal="SIGTERM", called=True,
            outcome=outcome.status, finished_after_s=waited)  # fmt: skip


# Kept for callers of the first version of this module.
def call(function: Callable[..., Any], raw: dict[str, str]) -> Any:
    prepared = Prepared(function)
    return function(**prepared.arguments(raw))


def outputs_of(function: Callable[..., Any], result: Any) -> dict[str, str]:
    return Prepared(function).outputs(result)


def run(reference: str, outputs_dir: Path, pairs: Sequence[str]) -> int:
    started = time.perf_counter()
    stage_logging.configure()
    termination = Termination(reference).install()
    try:
        # Before the import: a module may read its credentials when it loads.
        secret_files.load()
    except OSError as exc:
        prepared: Prepared | Outcome = Outcome("failed", error=f"a mounted credential: {exc}")
    else:
        prepared = prepare(reference)
    if isinstance(prepared, Outcome):
        outcome = prepared
    else:
        try:
            raw = parse_inputs(pairs)
        except BadInput as exc:
            outcome = Outcome("bad_input", error=str(exc))
        else:
            outcome = termination.call(prepared, raw)
    if outcome.status != "ok":
        log_outcome(reference, outcome)
        termination.finished(outcome)
        return outcome.exit_code
    outputs_dir.mkdir(parents=True, exist_ok=True)
    for name, text in outcome.outputs.items():
        (outputs_dir / name).write_text(text, encoding="utf-8")
    log("succeeded", stage=reference, ms=round((time.perf_counter() - started) * 1000, 3))
    termination.finished(outcome)
    return contract.EXIT_OK
