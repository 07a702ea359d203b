"""How a local run stops when asked: SIGTERM and Ctrl-C (SIGINT) drain, commit and clean up.

The first SIGTERM or SIGINT sets :attr:`Shutdown.requested`: the run reads no more events, lets
the events in flight finish, writes their results, commits their offsets, then stops Triton, the
workers and anything else it started, and exits 0 after SIGTERM (a supervisor's ordinary "stop")
or 130 after Ctrl-C (the shell's convention for an interrupted command). A second Ctrl-C or
SIGTERM while draining stops waiting: what is still in flight is neither written nor committed
(a restart reads it again), and the children are still stopped.

The handlers are installed on the main thread only (Python runs signal handlers there) and the
previous ones are restored on exit, so an embedding program's own handling comes back.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["Shutdown", "StopNow"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopNow(KeyboardInterrupt):
    """A second signal: stop draining now."""


class Shutdown:
    """Turns SIGTERM/SIGINT into a request to stop; a context manager around the run."""

    def __init__(self) -> None:
        self.requested = threading.Event()
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def request(self, signum: int = signal.SIGTERM) -> None:
        if self.signal is None:
            self.signal = signum
        self.requested.set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested.is_set():
            raise StopNow(f"{signal.Signals(signum).name} again: stopping without draining")
        name = signal.Signals(signum).name
        print(
            f"rtflow: {name}: finishing the events in flight, then stopping "
            "(again to stop at once)",
            file=sys.stderr,
            flush=True,
        )
        self.request(signum)

    @property
    def exit_code(self) -> int | None:
        """0 after SIGTERM, 130 after Ctrl-C, None when no signal came."""
        if self.signal is None:
            return None
        return 0 if self.signal == signal.SIGTERM else 128 + self.signal

    def __enter__(self) -> Shutdown:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous.clear()
