"""A server process a testing fixture started and must stop: its pid while alive, its log's
tail, and a stop that runs however the fixture ends (``close``, or a finalizer when the
fixture is dropped), never twice; a work folder of its own, removed at close, unless one was
given; ``with`` starts and closes it. Shared by the testing servers (kube-controller-manager,
Argo's workflow-controller, nats-server, PostgreSQL), which differ only in how they start and
in how their process is stopped."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from rtflow.stages.reaper import terminate_then_kill


def terminate(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s: how a well-behaved server is stopped."""
    terminate_then_kill(proc, 10.0)


class SupervisedProcess:
    log_path: Path | None = None

    def __init__(self, work_dir: Path | None = None) -> None:
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._stop: Callable[[subprocess.Popen[bytes]], None] | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def _supervise(
        self, proc: subprocess.Popen[bytes], stop: Callable[[subprocess.Popen[bytes]], None]
    ) -> None:
        """Own ``proc`` from now on: ``stop`` ends it at close, or when this is collected."""
        self._proc, self._stop = proc, stop
        self._finalizer = weakref.finalize(self, stop, proc)

    def start(self) -> Self:
        raise NotImplementedError

    def _work_folder(self, prefix: str) -> Path:
        """The work folder, made now (a temporary one) unless it was given."""
        self.work_dir = self.work_dir or Path(tempfile.mkdtemp(prefix=prefix))
        return self.work_dir

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def close(self) -> None:
        if self._proc is not None and self._stop is not None:
            self._stop(self._proc)
        self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._own_work_dir and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
