"""Stage logs through the standard :mod:`logging` machinery, one JSON object per line.

Every line a stage process writes through logging, the runtime's own and the stage function's
(``logging.getLogger(__name__).info(...)``), is JSON with the level, the logger, the message as
``event`` (structlog's key, and the runtime's since its first version), the context of the call
it belongs to (``event_id``, ``trace_id``, ``workflow``, ``task``, ``stage``; Argo's
``ARGO_WORKFLOW_NAME`` / ``ARGO_NODE_ID`` in a pod) and, for a failure, the ``traceback``.

The context is a :mod:`contextvars` value set around each call (:func:`context`), read by a
filter on the handler, so a line logged by user code deep inside the call carries it too, and
calls on other threads keep their own. ``RTFLOW_LOG_LEVEL`` sets the level (INFO by default).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import IO, Any

__all__ = ["LEVEL_ENV", "JsonFormatter", "configure", "context", "trace_id_of"]

LEVEL_ENV = "RTFLOW_LOG_LEVEL"
_CONTEXT: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "rtflow_log_context", default=None
)
# Attributes every LogRecord has: anything else on a record came from ``extra=`` (fields).
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "rtflow_context"}


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id of a W3C ``traceparent`` header (``00-<trace>-<span>-<flags>``)."""
    if not traceparent:
        return None
    parts = traceparent.strip().lower().split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1]
    return None


@contextlib.contextmanager
def context(**fields: Any) -> Iterator[None]:
    """Log lines within carry ``fields`` (None values are left out)."""
    merged = {**(_CONTEXT.get() or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.rtflow_context = _CONTEXT.get() or {}
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "event", <context>, <extra fields>, "traceback"?}``, keys
    sorted, one line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "workflow": os.environ.get("ARGO_WORKFLOW_NAME"),
            "node": os.environ.get("ARGO_NODE_ID"),
        }
        data.update(getattr(record, "rtflow_context", None) or _CONTEXT.get() or {})
        data.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            data["traceback"] = self.formatException(record.exc_info)
        elif isinstance(given := getattr(record, "traceback", None), str):
            data["traceback"] = given
        return json.dumps(data, sort_keys=True, default=str)


def configure(stream: IO[str] | None = None, level: str | int | None = None) -> logging.Handler:
    """Send every log record of this process as JSON lines to ``stream`` (stderr): the root
    logger's one handler, replacing any earlier one this function installed."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(_ContextFilter())
    handler.set_name("rtflow-json")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "rtflow-json"]:
        root.removeHandler(old)
    root.addHandler(handler)
    chosen = level if level is not None else os.environ.get(LEVEL_ENV, "INFO")
    root.setLevel(chosen.upper() if isinstance(chosen, str) else chosen)
    return handler
