"""Kubernetes resource quantities and Go durations.

Checked at compile time so that "512MB" (which the API server rejects) or "0.5 cores" fails with
a suggestion instead of as a sync error in Argo CD. Values are compared as exact decimals, so a
limit below its request is caught here too.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from rtflow.errors import DefinitionError

# The grammar of resource.Quantity (k8s.io/apimachinery), without a sign: a resource is never
# negative. <number><suffix>, suffix one of binary SI, decimal SI or a decimal exponent.
_QUANTITY = re.compile(
    r"^(?P<number>[0-9]+(\.[0-9]*)?|\.[0-9]+)"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$"
)
_QUANTITY_MAX = Decimal(2**63 - 1)
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    suffix: Decimal(10) ** exponent
    for suffix, exponent in {"m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}.items()
}
_LOOKALIKES = {
    "kb": "Ki",
    "mb": "Mi",
    "gb": "Gi",
    "tb": "Ti",
    "kib": "Ki",
    "mib": "Mi",
    "gib": "Gi",
    "tib": "Ti",
    "g": "Gi",
    "ki": "Ki",
    "mi": "Mi",
    "gi": "Gi",
}

_GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
_GO_UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_quantity(text: str) -> Decimal:
    """The exact value of a quantity; ValueError when it is not one."""
    match = _QUANTITY.match(text)
    if match is None:
        raise ValueError(text)
    try:
        number = Decimal(match["number"])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(text) from exc
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    if suffix:
        return number * (Decimal(10) ** int(suffix[1:]))
    return number


def _suggest(text: str, kind: str) -> str:
    stripped = text.strip().replace(" ", "")
    match = re.match(r"^([0-9]*\.?[0-9]+)([A-Za-z]*)$", stripped)
    if match:
        number, unit = match.groups()
        if kind == "cpu" and unit.lower() in {"core", "cores", "cpu", "cpus", "vcpu", "vcpus"}:
            millis = Decimal(number) * 1000
            if millis == millis.to_integral_value():
                return f"use '{int(millis)}m' (millicores) or '{number}'"
            return f"use '{number}'"
        if kind == "cpu" and unit.lower() in {"mc", "millicores", "millicore"}:
            return f"use '{number}m'"
        if unit.lower() in _LOOKALIKES:
            return (
                f"use '{number}{_LOOKALIKES[unit.lower()]}' (binary) or '{number}{unit[0].upper()}'"
            )
        if unit.lower() == "m" and kind == "memory":
            return f"use '{number}Mi' ('m' means milli-bytes)"
    example = "'500m' or '2'" if kind == "cpu" else "'512Mi' or '2Gi'"
    return f"write a Kubernetes quantity such as {example}"


def check_quantity(text: object, *, kind: str, field: str) -> str:
    """A valid, positive quantity as written; DefinitionError with a suggestion otherwise."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise DefinitionError(
            f"{kind} must be a quantity string, got {type(text).__name__}",
            fix=_suggest("", kind),
            field=field,
        )
    as_text = _number_text(text) if not isinstance(text, str) else text
    try:
        value = parse_quantity(as_text)
    except ValueError:
        raise DefinitionError(
            f"{as_text!r} is not a Kubernetes quantity", fix=_suggest(as_text, kind), field=field
        ) from None
    if value <= 0:
        raise DefinitionError(
            f"{kind} {as_text!r} must be greater than zero", fix=_suggest("", kind), field=field
        )
    if kind == "memory" and value < 1:
        raise DefinitionError(
            f"memory {as_text!r} is less than one byte ('m' means milli)",
            fix=_suggest(as_text, kind),
            field=field,
        )
    # resource.Quantity holds at most 2^63-1 of its smallest unit (milli for cpu, bytes for
    # memory) and silently caps larger values: 1e30 cores would become some other number.
    smallest = value * 1000 if kind == "cpu" else value
    if smallest > _QUANTITY_MAX:
        limit = "9.2e15 cores" if kind == "cpu" else "8Ei"
        raise DefinitionError(
            f"{kind} {as_text!r} is larger than Kubernetes can hold (at most {limit})",
            fix=_suggest("", kind),
            field=field,
        )
    return as_text


def _number_text(number: int | float) -> str:
    if isinstance(number, float):
        if not math.isfinite(number):
            return str(number)
        return format(Decimal(repr(number)).normalize(), "f")
    return str(number)


def parse_go_duration(text: str) -> Decimal:
    """Seconds in a Go duration string ("1m30s"); ValueError when it is not one."""
    if text == "0":
        return Decimal(0)
    if not _GO_DURATION.match(text):
        raise ValueError(text)
    total = Decimal(0)
    for number, _, unit in re.findall(r"([0-9]+(\.[0-9]+)?)(ns|us|µs|ms|s|m|h)", text):
        total += Decimal(number) * _GO_UNIT_SECONDS[unit]
    return total


def check_go_duration(text: object, *, field: str, positive: bool = False) -> str:
    """A Go duration as written; ``positive``: zero is refused too (an interval of 0s)."""
    if isinstance(text, str):
        try:
            seconds = parse_go_duration(text)
        except ValueError:
            pass
        else:
            if positive and seconds <= 0:
                raise DefinitionError(
                    f"{text!r} is zero", fix="give a duration above zero, e.g. '30s'", field=field
                )
            return text
    raise DefinitionError(
        f"{text!r} is not a duration",
        fix="write a Go duration such as '500ms', '10s', '2m' or '1h30m'",
        field=field,
    )


def check_seconds(value: object, *, field: str) -> int:
    """A deadline as whole seconds, from an int or a duration string, rounded up."""
    if isinstance(value, bool):
        seconds: Decimal | None = None
    elif isinstance(value, int):
        seconds = Decimal(value)
    elif isinstance(value, str):
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            seconds = None
    else:
        seconds = None
    if seconds is None or seconds <= 0:
        raise DefinitionError(
            f"{value!r} is not a positive duration",
            fix="give seconds as an int (30) or a duration string ('30s', '5m', '1h')",
            field=field,
        )
    return math.ceil(seconds)
