"""Long-lived stage workers: import a stage function once, then serve many invocations.

A worker is ``python -m rtflow.stages.workers MODULE:FUNCTION``. It imports the function, then
reads one JSON request per line on stdin (``{"inputs": {name: argo_text}, "context": {...}}``)
and answers one JSON line per request on a private copy of its stdout. The function's own
prints go to stderr (fd 1 is pointed at fd 2), so user code cannot corrupt the protocol.

Inputs are the same Argo parameter text a compiled template passes on its command line, and
:meth:`rtflow.stages.runtime.Prepared.invoke` decodes, calls, encodes and classifies them: the
same code path as ``python -m rtflow.stages run`` inside a container.

The parent side (:class:`Worker`, :class:`WorkerPool`) adds what a process boundary allows: a
timeout kills the worker and starts a replacement, and a worker that died is replaced too.

A worker ends with its input (the parent closed the pipe, or died). SIGTERM follows the
runtime's rule (:class:`rtflow.stages.runtime.Termination`): while idle the worker logs
``terminated`` and exits 143 at once; while serving a request it logs ``terminating``, finishes
the call, answers it and then exits, so the parent gets the call's real outcome and never
retries a call that completed. Each worker is reported to the run's reaper
(:mod:`rtflow.stages.reaper`), which stops it if the run is killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from rtflow.stages import reaper, runtime, stage_logging

#: ok / bad_input / failed come from the runtime; timeout and crashed from the parent side.
InvocationStatus = Literal["ok", "bad_input", "failed", "timeout", "crashed"]
START_TIMEOUT = 60.0


class WorkerStartError(RuntimeError):
    """A worker could not import its stage function (the message says why)."""


@dataclass(frozen=True)
class Invocation:
    """One call through a worker. ``ms`` is the round trip seen by the caller; ``run_ms`` the
    time inside the worker's :meth:`Prepared.invoke`; the difference is the runtime's overhead."""

    status: InvocationStatus
    outputs: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    ms: float = 0.0
    run_ms: float = 0.0

    @property
    def overhead_ms(self) -> float:
        return max(self.ms - self.run_ms, 0.0)


def child_env(extra_path: Sequence[str] = ()) -> dict[str, str]:
    """The environment of a worker: this interpreter's import path, so it finds what we find."""
    paths = [*extra_path, *(p or os.getcwd() for p in sys.path)]
    unique = list(dict.fromkeys(p for p in paths if p))
    return {**os.environ, "PYTHONPATH": os.pathsep.join(unique), "PYTHONUNBUFFERED": "1"}


class _LineReader:
    """Newline-framed reads from a pipe with a timeout (select, then os.read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buffer = bytearray()

    def readline(self, timeout: float | None) -> bytes | None:
        """A line without its newline; None on timeout; b"" at end of file."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            end = self.buffer.find(b"\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 1]
                return line
            wait = None if deadline is None else deadline - time.monotonic()
            if wait is not None and wait <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                return None
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return b""
            self.buffer += chunk


class Worker:
    """One worker process for one stage function."""

    def __init__(
        self,
        reference: str,
        *,
        env: Mapping[str, str] | None = None,
        stderr: IO[Any] | int | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self.reference = reference
        self.env = dict(env) if env is not None else child_env()
        self.stderr = stderr
        self.start_timeout = start_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._reader: _LineReader | None = None
        self.invocations = 0

    def spawn(self) -> None:
        """Start the process without waiting for it (so a pool starts its workers in parallel)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rtflow.stages.workers", self.reference],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            env=self.env,
            bufsize=0,
        )
        assert self.proc.stdout is not None
        self._reader = _LineReader(self.proc.stdout.fileno())
        reaper.watch(self.proc.pid)

    def wait_ready(self) -> None:
        assert self._reader is not None
        line = self._reader.readline(self.start_timeout)
        if not line:
            self.kill()
            why = "did not answer in time" if line is None else "exited during start"
            raise WorkerStartError(f"worker for {self.reference} {why}")
        hello = json.loads(line)
        if not hello.get("ready"):
            self.kill()
            raise WorkerStartError(f"cannot load stage {self.reference}: {hello.get('error')}")

    def start(self) -> Worker:
        self.spawn()
        self.wait_ready()
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(
        self,
        inputs: Mapping[str, str],
        *,
        timeout: float | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Invocation:
        """Send one request and wait for its answer; a timeout kills this worker."""
        assert self.proc is not None and self.proc.stdin is not None and self._reader is not None
        started = time.perf_counter()
        request = json.dumps({"inputs": dict(inputs), "context": dict(context or {})})
        try:
            self.proc.stdin.write(request.encode() + b"\n")
            line = self._reader.readline(timeout)
        except (BrokenPipeError, OSError):
            line = b""
        ms = (time.perf_counter() - started) * 1000
        self.invocations += 1
        if line is None:
            self.kill()
            return Invocation("timeout", error=f"no answer within {timeout:g} s", ms=ms)
        if not line:
            code = self.proc.wait()
            return Invocation("crashed", error=f"the worker exited with code {code}", ms=ms)
        answer = json.loads(line)
        return Invocation(
            answer["status"],
            answer.get("outputs") or {},
            answer.get("error"),
            ms,
            answer.get("ms", 0.0),
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
            reaper.forget(self.proc.pid)
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()

    def close(self, timeout: float = 5.0) -> None:
        """End of input: the worker returns from its loop (atexit handlers run: producers
        flush); killed if it does not end within ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()


class WorkerPool:
    """``size`` workers for one stage; a call takes an idle one, and a worker that timed out or
    died is replaced before it goes back."""

    def __init__(
        self,
        reference: str,
        size: int = 1,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        if size < 1:
            raise ValueError("a worker pool needs at least one worker")
        self.reference = reference
        self.size = size
        self._log: IO[bytes] | None = log_path.open("ab") if log_path is not None else None
        self._env = dict(env) if env is not None else child_env()
        self._start_timeout = start_timeout
        self._idle: queue.Queue[Worker] = queue.Queue()
        self._all: list[Worker] = []
        self._starting: list[Worker] = []
        self._lock = threading.Lock()
        self.replaced = 0
        self.closed = False

    def _new(self) -> Worker:
        worker = Worker(
            self.reference, env=self._env, stderr=self._log, start_timeout=self._start_timeout
        )
        with self._lock:
            self._all.append(worker)
        return worker

    def spawn(self) -> None:
        """Start the processes; :meth:`wait_ready` waits for their imports."""
        self._starting = [self._new() for _ in range(self.size)]
        for worker in self._starting:
            worker.spawn()

    def wait_ready(self) -> None:
        try:
            for worker in self._starting:
                worker.wait_ready()
        except BaseException:
            self.close()
            raise
        for worker in self._starting:
            self._idle.put(worker)
        self._starting = []

    def start(self) -> WorkerPool:
        self.spawn()
        self.wait_ready()
        return self

    def call(
        self,
        inputs: Mapping[str, str],
        *,
        timeout: float | None = None,
        context: Mapping[str, str] | None = None,
    ) -> Invocation:
        if self.closed:
            return Invocation("crashed", error="the run is stopping")
        worker = self._idle.get()
        if not worker.alive and not self.closed:  # it ended while idle: use a fresh one
            try:
                worker = self._replacement(worker)
            except BaseException:
                self._idle.put(worker)
                raise
        try:
            result = worker.call(inputs, timeout=timeout, context=context)
        except BaseException:
            worker.kill()
            worker = self._replacement(worker)
            raise
        finally:
            if not worker.alive:
                worker = self._replacement(worker)
            self._idle.put(worker)
        return result

    def _replacement(self, dead: Worker) -> Worker:
        dead.kill()
        if self.closed:  # the run is stopping: no new processes
            return dead
        with self._lock:
            if dead in self._all:
                self._all.remove(dead)
            self.replaced += 1
        return self._new().start()

    def close(self, timeout: float = 5.0) -> None:
        """End every worker's input; one still busy after ``timeout`` seconds is killed."""
        self.closed = True
        with self._lock:
            workers = list(self._all)
            self._all.clear()
        for worker in workers:
            if worker.proc is not None and worker.proc.stdin is not None:
                with contextlib.suppress(OSError):
                    worker.proc.stdin.close()
        for worker in workers:
            worker.close(timeout)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> WorkerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def measure_overhead(reference: str, inputs: Mapping[str, str], calls: int = 2000) -> list[float]:
    """Per-invocation runtime overhead in ms (round trip minus time inside the function)."""
    with WorkerPool(reference) as pool:
        for _ in range(50):
            pool.call(inputs)
        return [pool.call(inputs).overhead_ms for _ in range(calls)]


# -- the worker process -------------------------------------------------------------------------


def serve(reference: str) -> int:
    """The worker loop: import once, then one answer line per request line until stdin ends."""
    protocol = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # the function's prints (and anything writing fd 1) go to stderr
    sys.stdout = sys.stderr
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    stage_logging.configure()  # JSON lines on stderr: the stage's log file in a local run
    termination = runtime.Termination(reference).install()

    def send(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    prepared = runtime.prepare(reference)
    if isinstance(prepared, runtime.Outcome):
        send({"ready": False, "status": prepared.status, "error": prepared.error})
        return prepared.exit_code
    send({"ready": True})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        context = request.get("context") or {}
        started = time.perf_counter()
        fields = {k: v for k, v in context.items() if k not in ("event", "stage", "error")}
        # every line logged during the call (the function's own too) names its event and trace
        with stage_logging.context(stage=reference, **fields):
            outcome = termination.call(prepared, request["inputs"])
            ms = (time.perf_counter() - started) * 1000
            if outcome.status != "ok":
                runtime.log_outcome(reference, outcome)
        send(
            {"status": outcome.status, "outputs": outcome.outputs, "error": outcome.error, "ms": ms}
        )
        if termination.requested:
            termination.finished(outcome)
            return runtime.EXIT_TERMINATED
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m rtflow.stages.workers MODULE:FUNCTION", file=sys.stderr)
        sys.exit(2)
    sys.exit(serve(sys.argv[1]))
