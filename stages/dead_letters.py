"""Dead letters of a local run: one record per event the run could not carry through, and the
bytes that go out for a record whatever it holds.

A dead letter is ``{"event", "reason", "pipeline", "workflow", "source", "payload"}``: the
event's id, why (named for the real problem: the parse, the filter, the payload, the stage and
its error), where it came from (``topic``/``partition``/``offset`` for Kafka, ``file``/``line``)
and the payload. On Kafka the reason and the source also go in headers, by Kafka Connect's
convention (``rtflow-reason``, ``rtflow-source-topic``, ``-partition``, ``-offset``), as the
stream plane writes them.

Writing a dead letter must not fail for the event's sake, since it is the last place the event
can go: a payload that cannot be written back as JSON (nested deeper than the encoder goes)
travels as the message's original text, and a record larger than its topic accepts has its
payload cut to fit, with ``truncated`` giving the original size. A result record that does not
fit is not cut (half a result is a wrong result): :class:`RecordTooLarge` says so, and the
event is dead-lettered instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from rtflow.stages.events import Event

__all__ = ["RecordTooLarge", "encode_record", "headers", "letter"]

_MARGIN = 1024  # the key, the headers and the record's own framing


class RecordTooLarge(ValueError):
    """A result record is larger than its topic accepts."""


def letter(
    event: Event, reason: str, *, pipeline: str, workflow: str | None = None
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": event.id,
        "reason": reason,
        "payload": event.body,
        "workflow": workflow,
        "pipeline": pipeline,
    }
    if event.source is not None:
        record["source"] = dict(event.source)
    try:
        _dump(event.body)
    except (RecursionError, ValueError, TypeError) as exc:
        # nested deeper than the encoder goes: the original text stands in for the body
        if event.raw is not None:
            record["payload"] = event.raw.decode("utf-8", "replace")
        else:  # no original text (events given as Python values): say what it was
            record["payload"] = f"<a {type(event.body).__name__} that JSON cannot hold>"
        record["payload_error"] = f"{type(exc).__name__}: the payload is carried as its text"
    return record


def _dump(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, default=str).encode()


def encode_record(record: Mapping[str, Any], limit: int | None = None) -> bytes:
    """The JSON bytes of ``record``; with a ``limit``, a dead letter's payload is cut to fit and
    a result that does not fit raises :class:`RecordTooLarge`."""
    value = _dump(record)
    if limit is None or len(value) <= limit - _MARGIN:
        return value
    if "payload" not in record or "reason" not in record:
        raise RecordTooLarge(
            f"the result is {len(value):,} bytes; the topic takes at most {limit:,}"
        )
    fields = dict(record)
    payload = fields["payload"]
    text = payload if isinstance(payload, str) else _dump(payload).decode()
    fields["truncated"] = {"bytes": len(value), "payload_bytes": len(text.encode())}
    room = limit - _MARGIN - len(_dump({**fields, "payload": ""}))
    cut = text.encode()[: max(room, 0)].decode("utf-8", "ignore")
    while True:
        fields["payload"] = cut
        value = _dump(fields)
        over = len(value) - (limit - _MARGIN)
        if over <= 0 or not cut:
            return value
        cut = cut[: max(len(cut) - over - 16, 0)]  # escaping makes a character 1 byte or more


def headers(record: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """Kafka Connect's dead-letter headers for a dead-letter record."""
    out = [("rtflow-reason", str(record.get("reason", ""))[:4000].encode())]
    source = record.get("source") or {}
    if "topic" in source:
        out += [
            ("rtflow-source-topic", str(source["topic"]).encode()),
            ("rtflow-source-partition", str(source["partition"]).encode()),
            ("rtflow-source-offset", str(source["offset"]).encode()),
        ]
    out.append(("rtflow-pipeline", str(record.get("pipeline", "")).encode()))
    return out
