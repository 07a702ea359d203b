"""How a Triton model declaration says what is wrong: one message prefix, one range check.

Every rule of a model declaration (:mod:`rtflow.gpu.models`, :mod:`rtflow.gpu.tensors`,
:mod:`rtflow.gpu.scheduling`, :mod:`rtflow.gpu.repository`) raises through these two helpers,
so an error names its model and reads the same whichever module checks it.
"""

from __future__ import annotations

from rtflow.errors import DefinitionError


def _problem(model: str, text: str) -> str:
    return f"model {model!r}: {text}"


def _whole(
    value: object, *, model: str, field: str, what: str, lowest: int, highest: int, fix: str = ""
) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= highest:
        raise DefinitionError(
            _problem(model, f"{what} {value!r} is out of range"),
            fix=fix or f"use a whole number from {lowest} to {highest}",
            field=field,
        )
    return value
