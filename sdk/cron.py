"""Cron schedules and time zones, checked at compile time.

Argo Events' calendar source reads standard five-field cron (minute hour day-of-month month
day-of-week) and the @-descriptors. A schedule it would reject, or a time zone the cluster's tz
database does not know, must fail here with the field named, not as a crash-looping pod.
"""

from __future__ import annotations

import re
import zoneinfo

from rtflow.errors import DefinitionError

DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# name, low, high, names (index 0 = low)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_EVERY = re.compile(r"^@every\s+([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")


def check_cron(schedule: str, *, field: str) -> str:
    text = schedule.strip()
    if text in DESCRIPTORS or _EVERY.match(text):
        return text
    parts = text.split()
    if len(parts) != 5:
        raise DefinitionError(
            f"cron schedule {schedule!r} has {len(parts)} fields, not 5",
            fix="write minute hour day-of-month month day-of-week, e.g. '*/5 * * * *', "
            "or @hourly / @daily",
            field=field,
        )
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        problem = _check_field(part, low, high, names)
        if problem:
            raise DefinitionError(
                f"cron schedule {schedule!r}: {name} {part!r} {problem}",
                fix=f"use values {low}-{high}, '*', lists (1,2), ranges (1-5) and steps (*/15)",
                field=field,
            )
    return text


def _check_field(part: str, low: int, high: int, names: tuple[str, ...]) -> str | None:
    for item in part.split(","):
        body, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"has the step {step!r}"
        if body in ("*", "?"):
            continue
        bounds = body.split("-")
        if len(bounds) > 2 or not all(bounds):
            return "is not a value, range or step"
        values = []
        for bound in bounds:
            value = _value(bound, low, names)
            if value is None:
                return f"has {bound!r}, which is not a number or name"
            if not low <= value <= high:
                return f"has {value}, outside {low}-{high}"
            values.append(value)
        if len(values) == 2 and values[0] > values[1]:
            return "has a range that runs backwards"
    return None


def _value(text: str, low: int, names: tuple[str, ...]) -> int | None:
    if text.isdigit():
        return int(text)
    if text.lower() in names:
        return names.index(text.lower()) + low
    return None


def check_timezone(name: str, *, field: str) -> str:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        near = [z for z in zoneinfo.available_timezones() if z.lower() == name.lower()]
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise DefinitionError(
            f"{name!r} is not an IANA time zone",
            fix=f"{hint}use a name such as 'UTC', 'Europe/Paris' or 'America/New_York'",
            field=field,
        ) from None
    return name
