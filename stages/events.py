"""Where a local run's events come from and where its results go: JSONL files, stdin, stdout."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol


@dataclass
class Event:
    """One event: its id (``file:line`` or ``topic/partition/offset``), its JSON body, the
    metadata Argo Events puts beside the body, why it could not be read (if so), and what to call
    once its result is written."""

    id: str
    body: Any
    metadata: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    ack: Callable[[], None] | None = None
    raw: bytes | None = None
    """The message as it came (a dead letter carries it when the body cannot be written back)."""
    source: dict[str, Any] | None = None
    """Where it came from: ``{"topic", "partition", "offset"}`` for Kafka, ``{"file", "line"}``."""


#: The largest magnitude an IEEE double holds: what every JSON reader but Python's turns a number
#: into (Argo Events' gjson, a Go or JavaScript stage), so a number beyond it is not portable JSON.
_FLOAT_MAX = 1.7976931348623157e308


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"the number {_short(text)} is out of range for a JSON number (a double)")
    return value


def _portable_int(text: str) -> int:
    value = int(text)
    if abs(value) > _FLOAT_MAX:
        raise ValueError(
            f"the number {_short(text)} ({len(text.lstrip('-'))} digits) is out of range for a "
            "JSON number (a double)"
        )
    return value


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON (JSON has no NaN or Infinity)")


def _short(text: str, keep: int = 24) -> str:
    return text if len(text) <= keep else f"{text[: keep // 2]}...{text[-keep // 2 :]}"


def parse_body(raw: bytes | str) -> tuple[Any, str | None]:
    """A message's JSON body, or its text and why it is not a body this run can carry.

    Every failure is named for what it is: not JSON at all, nested deeper than Python's
    recursion limit, a number no double holds (``1e999``, a 400-digit integer: another reader
    would see infinity, and Python's ``float()`` an OverflowError), NaN or Infinity.
    """
    try:
        body = json.loads(
            raw, parse_float=_finite_float, parse_int=_portable_int, parse_constant=_no_constant
        )
    except RecursionError:
        return _text(raw), (
            "the message is nested too deeply to read (deeper than Python's recursion limit, "
            f"{sys.getrecursionlimit()})"
        )
    except UnicodeDecodeError as exc:
        return _text(raw), f"the message is not UTF-8 text: {exc}"
    except json.JSONDecodeError as exc:
        return _text(raw), f"the message is not JSON: {exc}"
    except ValueError as exc:  # from the number and constant checks above
        return _text(raw), f"the message is not portable JSON: {exc}"
    return body, None


def _text(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace")


class Sink(Protocol):
    def write(self, record: Mapping[str, Any]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object per line to a file, or to stdout/stderr for ``-``/``stderr``."""

    def __init__(self, target: str | Path) -> None:
        self.name = str(target)
        self._owned = False
        self._file: IO[str]
        if self.name == "-":
            self._file = sys.stdout
        elif self.name == "stderr":
            self._file = sys.stderr
        else:
            self._file = Path(target).open("a", encoding="utf-8")  # noqa: SIM115 - closed in close()
            self._owned = True
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, default=str)
        with self._lock:
            self._file.write(line + "\n")

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        self.flush()
        if self._owned:
            self._file.close()


class MemorySink:
    """Records kept in a list (tests, embedding)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self.records.append(dict(record))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class JsonlSource:
    """Events from a JSONL file (``-``: stdin); blank lines are skipped, a line that is not JSON
    becomes an event with an error (it goes to the dead-letter output)."""

    def __init__(self, target: str | Path) -> None:
        self.name = str(target)
        self.total: int | None = None
        if self.name != "-":
            with Path(target).open("rb") as fh:
                self.total = sum(1 for line in fh if line.strip())

    def __iter__(self) -> Iterator[Event]:
        label = "stdin" if self.name == "-" else Path(self.name).name
        fh = sys.stdin if self.name == "-" else Path(self.name).open(encoding="utf-8")  # noqa: SIM115
        try:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                body, problem = parse_body(line)
                source = {"file": self.name, "line": number}
                if problem is not None:
                    body = line.rstrip("\n")
                raw = line.rstrip("\n").encode()
                yield Event(f"{label}:{number}", body, error=problem, raw=raw, source=source)
        finally:
            if fh is not sys.stdin:
                fh.close()

    def close(self) -> None:
        pass


class ListSource:
    """Events from Python values (tests, embedding, benchmarks)."""

    def __init__(self, bodies: list[Any], *, prefix: str = "event") -> None:
        self.bodies = bodies
        self.prefix = prefix
        self.total: int | None = len(bodies)

    def __iter__(self) -> Iterator[Event]:
        for index, body in enumerate(self.bodies):
            yield Event(f"{self.prefix}:{index}", body)

    def close(self) -> None:
        pass
