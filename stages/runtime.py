"""Run one Python-function stage the way a compiled template invokes it.

``python -m rtflow.stages run MODULE:FUNCTION --outputs-dir DIR --input name=value ...``: import
the function, decode each input by the function's own annotation, call it, write each output
to ``DIR/<name>`` (JSON, or the bare string for str) for Argo to read, and exit with a code the
template's retry expression understands: 65 for a bad input (retrying cannot help), 1 for any
other failure (retryable), 0 for success. One JSON log line per event on stderr.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import sys
import time
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rtflow.param_types import ParamType, decode, encode, from_annotation
from rtflow.stages import contract


class BadInput(Exception):
    """The inputs do not fit the function: retrying with the same inputs cannot help."""


def log(event: str, **fields: object) -> None:
    record = {
        "ts": round(time.time(), 3),
        "event": event,
        "workflow": os.environ.get("ARGO_WORKFLOW_NAME"),
        "node": os.environ.get("ARGO_NODE_ID"),
        **fields,
    }
    print(json.dumps(record, sort_keys=True, default=str), file=sys.stderr, flush=True)


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


def call(function: Callable[..., Any], raw: dict[str, str]) -> Any:
    hints = typing.get_type_hints(function)
    signature = inspect.signature(function)
    unknown = sorted(set(raw) - set(signature.parameters))
    if unknown:
        raise BadInput(f"unknown input {unknown[0]!r}")
    arguments: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        if name not in raw:
            if parameter.default is inspect.Parameter.empty:
                raise BadInput(f"input {name!r} is missing")
            continue
        param_type = from_annotation(hints.get(name))
        if param_type is None:
            raise BadInput(f"input {name!r} has an unsupported annotation")
        try:
            arguments[name] = decode(raw[name], param_type)
        except ValueError as exc:
            raise BadInput(f"input {name!r}: {exc}") from None
    return function(**arguments)


def outputs_of(function: Callable[..., Any], result: Any) -> dict[str, str]:
    annotation = typing.get_type_hints(function).get("return")
    if annotation is None or annotation is type(None):
        return {}
    fields = getattr(annotation, "_fields", None)
    if fields is not None:
        return {name: encode(getattr(result, name)) for name in fields}
    param_type = from_annotation(annotation) or ParamType("str")
    if not param_type.accepts_value(result):
        raise TypeError(f"the function returned {type(result).__name__}, declared {param_type}")
    return {"result": encode(result)}


def run(reference: str, outputs_dir: Path, pairs: Sequence[str]) -> int:
    started = time.perf_counter()
    try:
        function = load(reference)
        result = call(function, parse_inputs(pairs))
        written = outputs_of(function, result)
    except BadInput as exc:
        log("bad_input", stage=reference, error=str(exc))
        return contract.EXIT_BAD_INPUT
    except Exception as exc:
        log("failed", stage=reference, error=f"{type(exc).__name__}: {exc}")
        return contract.EXIT_FAILED
    outputs_dir.mkdir(parents=True, exist_ok=True)
    for name, text in written.items():
        (outputs_dir / name).write_text(text, encoding="utf-8")
    log("succeeded", stage=reference, ms=round((time.perf_counter() - started) * 1000, 3))
    return contract.EXIT_OK
