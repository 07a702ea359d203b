"""Where a local run's events come from and where its results go: JSONL files, stdin, stdout."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from rtflow.stages import portable_json


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
                body, problem = portable_json.parse(line)
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
