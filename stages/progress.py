"""The live progress of ``rtflow run --local`` (workflow plane), on stderr.

On a terminal it is a rich progress bar, redrawn a few times a second. Anywhere else (CI logs,
a pipe, a file) it is one plain line every ``RTFLOW_PROGRESS_INTERVAL`` seconds (5 by default)
and a last one at the end, so a long run is never silent and a log is not flooded with carriage
returns. The rate shown is the average since the first event was read (events done / time), which
stays meaningful while the source is idle; the time since the last event finished is shown as
``idle`` instead of letting a windowed rate fall to 0/s.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import IO, Any

from rtflow.stages.run_report import RunSummary

__all__ = ["INTERVAL_ENV", "RunProgress"]

INTERVAL_ENV = "RTFLOW_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 5.0
IDLE_AFTER = 2.0  # seconds without a finished event before the line says "idle"


class RunProgress:
    """Reports ``summary``'s counts (read under ``lock``) until :meth:`stop`."""

    def __init__(
        self,
        summary: RunSummary,
        lock: threading.Lock,
        total: int | None,
        *,
        stream: IO[str] | None = None,
        terminal: bool | None = None,
    ) -> None:
        self.summary = summary
        self.lock = lock
        self.total = total
        self.stream = stream or sys.stderr
        self.terminal = self.stream.isatty() if terminal is None else terminal
        self.interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()
        self._last_done = 0
        self._last_change = self._started

    def start(self) -> RunProgress:
        self._started = self._last_change = time.monotonic()
        target = self._rich if self.terminal else self._plain
        self._thread = threading.Thread(target=target, name="rtflow-progress", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    # what is shown

    def _counts(self) -> tuple[int, int, int]:
        with self.lock:
            return self.summary.events, self.summary.succeeded, self.summary.failed

    def detail(self, now: float | None = None) -> str:
        """``12 ok  1 failed  40.2/s average`` plus ``idle 3 s`` when nothing finished lately."""
        now = time.monotonic() if now is None else now
        done, ok, bad = self._counts()
        if done != self._last_done:
            self._last_done, self._last_change = done, now
        elapsed = max(now - self._started, 1e-9)
        text = f"{ok} ok  {bad} failed  {done / elapsed:,.1f}/s average"
        idle = now - self._last_change
        if idle >= IDLE_AFTER:
            text += f"  idle {idle:.0f} s"
        return text

    def line(self, now: float | None = None) -> str:
        done, _, _ = self._counts()
        of = f"/{self.total}" if self.total else ""
        return f"progress: {done}{of} events  {self.detail(now)}"

    # the two displays

    def _plain(self) -> None:
        while not self._stop.wait(self.interval):
            self._write(self.line())
        self._write(self.line())

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def _rich(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        console = Console(file=self.stream, force_terminal=True)
        columns: list[Any] = [BarColumn(), MofNCompleteColumn()] if self.total else []
        columns.append(TextColumn("{task.completed:.0f} events" if not self.total else ""))
        columns.append(TextColumn("{task.fields[detail]}"))
        with Progress(*columns, console=console, refresh_per_second=4) as bar:
            task = bar.add_task("events", total=self.total, detail="")
            while True:
                stopped = self._stop.wait(0.25)
                done, _, _ = self._counts()
                bar.update(task, completed=done, detail=self.detail())
                if stopped:
                    return
