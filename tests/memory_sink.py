"""A local run's result sink that keeps the records in memory, for tests to read."""

from __future__ import annotations

from typing import Any

from rtflow.stages.events import Event


class MemorySink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, record: dict[str, Any], event: Event | None = None) -> None:
        self.records.append(record)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass
