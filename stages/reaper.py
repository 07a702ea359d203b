"""No child of a local run outlives it, even when the run itself is killed with SIGKILL.

A clean stop (the end of the events, SIGTERM, Ctrl-C) stops every child in order: the workers
(end of their input), Triton (SIGTERM, then SIGKILL to its process group, which holds its
Python-backend stubs). A run killed with SIGKILL runs no code at all, and the children would
stay: Triton and its stubs in a session of their own, still listening, a worker in the middle of
a call. So a local run starts a *reaper* first: ``python -m rtflow.stages.reaper``, in a session
of its own (a Ctrl-C or a kill of the run's process group does not reach it), reading the run's
children from a pipe only the run holds. When the pipe closes, because the run ended or died,
the reaper sends SIGTERM to every child still alive (to the whole process group for Triton),
waits up to ``grace`` seconds, sends SIGKILL to what is left, and exits. Each child is known by
its pid *and* its start time (``/proc/<pid>/stat``), so a pid the system reused meanwhile is
never signalled.

A child started a moment before the kill may not be reported yet (Triton is known by its pid
only once ``TritonServer.start`` returns, seconds after its process began). So ``rtflow run
--local`` also *marks* its environment (``RTFLOW_LOCAL_RUN=<id>``, :func:`active` with
``mark=True``): every process it starts, and every process those start (Triton's stubs), inherit
it, and the reaper also stops every process whose ``/proc/<pid>/environ`` carries the mark. The
mark is for the command only: a program that calls ``run_local`` in-process (a test session)
may start processes of its own meanwhile (a broker restart), which must not be stopped with the
run's.

The Linux parent-death signal (``prctl(PR_SET_PDEATHSIG)``) is the kernel's version of this for
one direct child, and :func:`parent_death_signal` sets it up; it is tied to the *thread* that
started the child (it fires when that thread ends), so it only suits children started from the
main thread (the test Kafka broker, :mod:`rtflow.testing.kafka_broker`). Triton is started in a
session of its own by :class:`rtflow.gpu.triton_server.TritonServer` and its stubs are its own
children, and workers are started from task threads: the reaper covers them.

While a run is active (:func:`active`), :func:`watch` and :func:`forget` report to its reaper;
without one they do nothing, so code that starts children need not know whether it runs inside
a local run.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["Reaper", "active", "forget", "parent_death_signal", "start_time", "watch"]

PR_SET_PDEATHSIG = 1


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] == "Z":  # a zombie is gone already, only not reaped
        return None
    return int(fields[19])


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def terminate_then_kill(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """SIGTERM (a server shuts down in order: flushes, closes its logs), then SIGKILL after
    ``timeout``; returns once the process is gone. Module level, so a ``weakref.finalize``
    that calls it holds no reference to the object that owns the process."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def parent_death_signal(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the kernel send ``sig`` to the child when its parent thread ends,
    or None where that cannot work (not Linux, not the main thread: see the module docstring)."""
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork
    parent = os.getpid()

    def set_signal() -> None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the call: nobody will signal
            os.kill(os.getpid(), sig)

    return set_signal


class Reaper:
    """The watchdog process of one run (see the module docstring)."""

    def __init__(self, grace: float = 10.0, *, mark: str | None = None) -> None:
        self.grace = grace
        self.mark = mark
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Reaper:
        env = {k: v for k, v in os.environ.items() if k != MARK}
        mark = [f"{MARK}={self.mark}", str(os.getpid())] if self.mark else []
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rtflow.stages.reaper", str(self.grace), *mark],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return self

    def _send(self, line: str) -> None:
        with self._lock:
            if self._proc is None or self._proc.stdin is None:
                return
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdin.write(line.encode() + b"\n")
                self._proc.stdin.flush()

    def watch(self, pid: int, *, group: bool = False) -> None:
        started = start_time(pid)
        if started is not None:
            self._send(f"+ {pid} {started} {int(group)}")

    def forget(self, pid: int) -> None:
        self._send(f"- {pid}")

    def close(self) -> None:
        """The run is over: the reaper stops what is still alive, then exits."""
        with self._lock:
            proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(self.grace + 5)


_active: list[Reaper] = []
MARK = "RTFLOW_LOCAL_RUN"


def watch(pid: int, *, group: bool = False) -> None:
    """Have the active run's reaper stop ``pid`` (its process group with ``group``) if the run
    ends first; nothing without an active run."""
    for reaper in _active[-1:]:
        reaper.watch(pid, group=group)


def forget(pid: int) -> None:
    for reaper in _active[-1:]:
        reaper.forget(pid)


@contextlib.contextmanager
def active(grace: float = 10.0, *, mark: bool = False) -> Iterator[Reaper]:
    """A reaper for the duration of a run (the active one, when there is one already); with
    ``mark``, this process's environment carries the mark its children inherit."""
    if _active:
        yield _active[-1]
        return
    marker = f"{os.getpid()}-{os.urandom(6).hex()}" if mark else None
    reaper = Reaper(grace, mark=marker).start()
    previous = os.environ.get(MARK)
    if marker is not None:
        os.environ[MARK] = marker
    _active.append(reaper)
    try:
        yield reaper
    finally:
        _active.remove(reaper)
        if marker is not None:
            if previous is None:
                os.environ.pop(MARK, None)
            else:
                os.environ[MARK] = previous
        reaper.close()


# -- the reaper process ---------------------------------------------------------------------------


def _alive(pid: int, started: int, group: bool) -> bool:
    if group and _group_members(pid):
        return True
    return start_time(pid) == started


def _signal(pid: int, started: int, group: bool, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        elif start_time(pid) == started:
            os.kill(pid, sig)


def _marked(mark: bytes, spare: set[int]) -> dict[int, tuple[int, bool]]:
    """The live processes whose environment carries ``mark`` (``NAME=value``)."""
    found: dict[int, tuple[int, bool]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spare:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if mark in environ.split(b"\0") and (started := start_time(int(entry.name))):
            found[int(entry.name)] = (started, False)
    return found


def serve(grace: float, mark: str | None = None, parent: int | None = None) -> int:
    """Read ``+ pid start group`` / ``- pid`` lines until end of input, then stop the rest (and,
    with ``mark``, every process whose environment carries it, but the parent and itself)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watched: dict[int, tuple[int, bool]] = {}
    for line in sys.stdin.buffer:
        parts = line.split()
        if len(parts) == 4 and parts[0] == b"+":
            watched[int(parts[1])] = (int(parts[2]), parts[3] == b"1")
        elif len(parts) == 2 and parts[0] == b"-":
            watched.pop(int(parts[1]), None)
    spare = {os.getpid(), *([parent] if parent else [])}
    if mark is not None:
        watched = {**_marked(mark.encode(), spare), **watched}
    left = {pid: info for pid, info in watched.items() if _alive(pid, *info)}
    for pid, (started, group) in left.items():
        _signal(pid, started, group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = {pid: info for pid, info in left.items() if _alive(pid, *info)}
    if mark is not None:  # and anything a dying child started meanwhile
        left = {**_marked(mark.encode(), spare), **left}
    for pid, (started, group) in left.items():
        _signal(pid, started, group, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(
        serve(
            float(args[0]) if args else 10.0,
            args[1] if len(args) > 1 else None,
            int(args[2]) if len(args) > 2 else None,
        )
    )
