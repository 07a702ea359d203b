"""Start a real Triton Inference Server on this machine, from the ``nvidia-pytriton`` wheel.

``rtflow run --local`` and the integration tests must exercise the same server that the
generated Kubernetes Deployments run, without Docker or a GPU. The ``nvidia-pytriton`` wheel ships
a CPU-capable ``tritonserver`` binary and its Python backend; this module only *launches* that
binary and never imports pytriton's Python API, so importing it stays cheap (standard library
only).

Running the wheel's binary by hand has traps that this launcher exists to absorb (finding the
pieces and the environment they need: :mod:`rtflow.gpu.triton_install`):

* the Python-backend stub (one per Python minor version, kept apart from the backend library) links
  ``libpython3.X.so`` dynamically, so ``LD_LIBRARY_PATH`` must name the running interpreter's
  library folder, or the stub silently picks another libpython (or none);
* the copied stub loses its ``$ORIGIN`` run path, so the wheel's bundled libraries
  (``nvidia_pytriton.libs``) must be on ``LD_LIBRARY_PATH`` too;
* the stub's embedded interpreter finds its ``site-packages`` by looking ``python3`` up on
  ``PATH``, so the running interpreter's ``bin`` folder must come first there;
* with numpy 2 importable by the stub, results come back empty or malformed (the stub's pybind11
  speaks the numpy 1 C API), so numpy<2 is checked before starting;
* Triton listens on 0.0.0.0 by default; this launcher binds 127.0.0.1 unless told otherwise;
* on SIGTERM Triton waits up to ``--exit-timeout-secs`` (30 s by default) for every open HTTP
  keep-alive connection, so a stop with a live tritonclient took 30 s; the launcher passes 5 s.

Run ``python -m rtflow.gpu.triton_server --model-repository DIR`` to serve a folder until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, TYPE_CHECKING, Final, Literal, TypeAlias

from rtflow.gpu.local_ports import free_ports, http_status, port_in_use, url_host
from rtflow.gpu.shm_regions import new_prefix, remove_regions, sweep_orphans
from rtflow.gpu.triton_install import (
    ENV_BINARY,
    INSTALL_HINT,
    TritonError,
    TritonInstall,
    TritonUnavailable,
    check_numpy,
    locate_triton,
    prepare_backends,
    python_library_dir,
    server_env,
)

__all__ = [
    "ENV_BINARY",
    "INSTALL_HINT",
    "TritonError",
    "TritonInstall",
    "TritonServer",
    "TritonStartupError",
    "TritonStartupTimeout",
    "TritonUnavailable",
    "check_numpy",
    "discover_models",
    "free_ports",
    "locate_triton",
    "main",
]

ModelControlMode = Literal["none", "poll", "explicit"]

UPSTREAM_START_ABORT: Final = "boost::interprocess::lock_exception"
"""What Triton's log says when its Python backend aborts at start-up for no fault of the models
(an upstream race between instances, triton-inference-server/server#8882): retried once."""
_LOG_TAIL_LINES: Final = 40
_LOG_TAIL_BYTES: Final = 64 * 1024
_POLL_SECONDS: Final = 0.1


class TritonStartupError(TritonError):
    """Raised when the server exited or never became ready; carries the log tail for diagnosis.

    The log is the only place Triton explains itself (a model that failed to load, a port in use,
    a stub that could not find its shared libraries), so it travels with the exception.
    """

    def __init__(self, message: str, log_tail: str = "") -> None:
        self.log_tail = log_tail
        full = f"{message}\n--- tritonserver log tail ---\n{log_tail}" if log_tail else message
        super().__init__(full)


class TritonStartupTimeout(TritonStartupError, TimeoutError):
    """Raised when readiness did not arrive in time; also a ``TimeoutError`` for generic code."""


def discover_models(repository: str | os.PathLike[str]) -> list[str]:
    """List the models Triton will load from ``repository``, so readiness can wait for each.

    A model is a folder holding ``config.pbtxt`` or a numeric version folder, as Triton sees it.
    """
    repo = Path(repository)
    names: list[str] = []
    for entry in sorted(repo.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        has_version = any(p.is_dir() and p.name.isdigit() for p in entry.iterdir())
        if has_version or (entry / "config.pbtxt").is_file():
            names.append(entry.name)
    return names


def _terminate(process: subprocess.Popen[bytes], timeout: float, shm_prefix: str) -> None:
    """Stop gracefully, then forcibly, and sweep up what a forced stop leaves behind.

    SIGTERM lets Triton unload models and stop its stubs; SIGKILL to the whole group (the server
    was started in its own session) covers a hung server and any stub it left behind. A server
    killed while loading a model leaves its Python-backend regions in /dev/shm; the per-server
    prefix makes them safe to remove (:mod:`rtflow.gpu.shm_regions`).
    """
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    remove_regions(shm_prefix)


if TYPE_CHECKING:  # finalize is generic only in typeshed, not at run time
    _Finalizer: TypeAlias = weakref.finalize[[subprocess.Popen[bytes], float, str], "TritonServer"]


def _drop_options_table(lines: list[str]) -> list[str]:
    """Remove Triton's start-up options table: it echoes the command line and would otherwise
    push the actual error (a model's traceback, the model status table) out of a short tail."""
    kept: list[str] = []
    borders = -1  # -1: outside the table; otherwise the number of borders seen inside it
    for line in lines:
        if borders < 0 and line.startswith("| Option ") and "| Value" in line:
            if kept and kept[-1].startswith("+--"):
                kept.pop()
            borders = 0
        elif borders >= 0:
            if line.startswith("+--"):
                borders += 1
                if borders == 2:
                    borders = -1
        else:
            kept.append(line)
    return kept


class TritonServer:
    """One ``tritonserver`` process serving a model repository, started and stopped on demand.

    Use it as a context manager so the server never outlives the caller::

        with TritonServer("model_repository", http_port=0) as server:
            requests.post(f"{server.http_url}/v2/models/scorer/infer", json=...)

    Port ``0`` picks a free loopback port when the object is created; the chosen ports survive
    ``restart()`` so clients keep their URLs. The server's stdout and stderr (which is where a
    failing stub reports, not Triton's ``--log-file``) go to ``log_path``, appended across restarts.
    """

    def __init__(
        self,
        model_repository: str | os.PathLike[str],
        *,
        host: str = "127.0.0.1",
        http_port: int = 8000,
        grpc_port: int = 8001,
        metrics_port: int = 8002,
        models: Sequence[str] | None = None,
        model_control_mode: ModelControlMode = "none",
        binary: str | os.PathLike[str] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        log_file: str | os.PathLike[str] | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 30.0,
        exit_timeout: int = 5,
        gpu: bool = False,
        check_numpy: bool = True,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Configure without starting, so construction is cheap and never touches the network.

        Args:
            model_repository: the folder Triton serves (one subfolder per model).
            host: the address all three endpoints bind; loopback unless you mean to expose them.
            http_port, grpc_port, metrics_port: ``0`` picks a free port.
            models: names to wait for before ``start()`` returns. ``None`` means every model found
                in the repository (none in ``explicit`` mode, where they are also the ones loaded).
            model_control_mode: Triton's ``--model-control-mode``.
            binary: a ``tritonserver`` to run instead of ``$RTFLOW_TRITONSERVER`` or the wheel's.
            work_dir: where the assembled backend folder (and, by default, the log) live; a
                temporary folder removed by ``close()`` when not given.
            log_file: where the server's output goes; kept after ``close()`` when given.
            startup_timeout: seconds to wait for the server and every model to be READY.
            stop_timeout: seconds between SIGTERM and SIGKILL.
            exit_timeout: Triton's ``--exit-timeout-secs``: how long a SIGTERM-ed server waits
                for in-flight requests *and for idle keep-alive connections* (tritonclient's
                HTTP pool keeps one open) before it unloads models. Triton's default of 30 s
                made every stop with a live client take 30 s; keep it below ``stop_timeout``.
            gpu: keep Triton's CUDA pinned-memory pools and GPU metrics (off on CPU-only
                machines, where they only produce warnings).
            check_numpy: refuse to start with numpy>=2 (see module docstring).
            extra_args: appended verbatim to the command line, after the launcher's own flags.
            env: extra environment variables for the server and its stubs.
        """
        self.model_repository = Path(model_repository).resolve()
        self.host = host
        wanted = [http_port, grpc_port, metrics_port]
        picked = iter(free_ports(wanted.count(0), host if host not in ("", "::") else "127.0.0.1"))
        self.http_port, self.grpc_port, self.metrics_port = (p or next(picked) for p in wanted)
        self.models = list(models) if models is not None else None
        self.model_control_mode: ModelControlMode = model_control_mode
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.exit_timeout = exit_timeout
        self.gpu = gpu
        self.check_numpy = check_numpy
        self.extra_args = list(extra_args)
        self.env = dict(env) if env else None
        self.startup_seconds: float | None = None
        """Seconds from process start to every model READY, for the last ``start()``."""

        self._own_work_dir = work_dir is None
        self._work_dir = Path(work_dir).resolve() if work_dir is not None else None
        self._log_file = Path(log_file).resolve() if log_file is not None else None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._log_offset = 0
        self._finalizer: _Finalizer | None = None
        self._shm_prefix = new_prefix()

    # -- addresses -------------------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """KServe v2 REST base URL, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{url_host(self.host)}:{self.http_port}"

    @property
    def http_address(self) -> str:
        """``host:port`` without a scheme: tritonclient's HTTP client rejects a URL with one."""
        return f"{url_host(self.host)}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` without a scheme, the form tritonclient's gRPC client expects."""
        return f"{url_host(self.host)}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus endpoint, including the ``/metrics`` path scrapers need."""
        return f"http://{url_host(self.host)}:{self.metrics_port}/metrics"

    # -- state -----------------------------------------------------------------------------------

    @property
    def work_dir(self) -> Path:
        """Created on first use, so merely constructing a server leaves no trace on disk."""
        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="rtflow-triton-"))
        return self._work_dir

    @property
    def log_path(self) -> Path:
        return self._log_file if self._log_file is not None else self.work_dir / "tritonserver.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The end of the current run's output, which is where Triton explains every failure."""
        try:
            with self.log_path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(self._log_offset, size - _LOG_TAIL_BYTES))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
        tail = "\n".join(_drop_options_table(text.splitlines())[-lines:])
        if "error while loading shared libraries" in tail:
            tail += (
                "\n[rtflow] hint: the stub or server could not find a shared library; "
                "LD_LIBRARY_PATH must include the Python library folder "
                f"({python_library_dir()}) and the wheel's nvidia_pytriton.libs"
            )
        return tail

    # -- lifecycle -------------------------------------------------------------------------------

    def command(self, install: TritonInstall, backends: Path) -> list[str]:
        """The exact command line, exposed so a failure report or a user can rerun it by hand."""
        host = self.host
        cmd = [
            os.fspath(install.binary),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={backends}",
            f"--model-control-mode={self.model_control_mode}",
            f"--http-address={host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={host}",
            f"--metrics-port={self.metrics_port}",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--exit-timeout-secs={self.exit_timeout}",
            # Two servers on one machine would otherwise share the stubs' /dev/shm region names.
            f"--backend-config=python,shm-region-prefix-name={self._shm_prefix}",
        ]
        if install.caches is not None:
            cmd.append(f"--cache-directory={install.caches}")
        if not self.gpu:
            cmd += [
                "--allow-gpu-metrics=false",
                "--pinned-memory-pool-byte-size=0",
                "--cuda-memory-pool-byte-size=0:0",
            ]
        if self.model_control_mode == "explicit":
            cmd += [f"--load-model={name}" for name in self.models or ()]
        return [*cmd, *self.extra_args]

    def _models_to_wait_for(self) -> list[str]:
        if self.models is not None:
            return list(self.models)
        if self.model_control_mode == "explicit":
            return []
        return discover_models(self.model_repository)

    def start(self) -> TritonServer:
        """Start the server and return only once it and every awaited model are READY.

        Raises:
            TritonUnavailable: Triton, a stub for this Python, or numpy<2 is missing.
            TritonStartupError: the server exited, or a port was taken.
            TritonStartupTimeout: readiness did not arrive within ``startup_timeout``.
        """
        if self.is_running:
            return self
        self.stop()  # reap a server that died on its own, and close its log
        if not self.model_repository.is_dir():
            raise TritonError(f"model repository {self.model_repository} is not a folder")
        install = locate_triton(self.binary)
        sweep_orphans()  # what servers of processes killed earlier left in /dev/shm
        if self.check_numpy:
            check_numpy()
        for name, port in (
            ("HTTP", self.http_port),
            ("gRPC", self.grpc_port),
            ("metrics", self.metrics_port),
        ):
            if port_in_use(self.host, port):
                raise TritonStartupError(f"{name} port {self.host}:{port} is already in use")
        try:
            return self._launch(install)
        except TritonStartupError as exc:
            if isinstance(exc, TritonStartupTimeout) or UPSTREAM_START_ABORT not in exc.log_tail:
                raise
            # Triton's Python backend can abort while two instances initialise their shared
            # memory (triton-inference-server/server#8882); a second start succeeds.
            print(
                "rtflow: Triton aborted while starting (boost::interprocess::lock_exception, "
                "an upstream Python-backend race); starting it once more",
                file=sys.stderr,
            )
            return self._launch(install)

    def _launch(self, install: TritonInstall) -> TritonServer:
        models = self._models_to_wait_for()
        backends = prepare_backends(install, self.work_dir)
        cmd = self.command(install, backends)
        env = server_env(install, self.env)

        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.log_path.open("ab")
        self._log_offset = handle.seek(0, os.SEEK_END)
        handle.write(f"[rtflow] starting: {' '.join(cmd)}\n".encode())
        handle.flush()
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.work_dir,
                start_new_session=True,
            )
        except OSError as exc:
            handle.close()
            raise TritonUnavailable(f"cannot execute {install.binary}: {exc}") from exc
        self._process = process
        self._log_handle = handle
        # A forgotten server must not outlive the interpreter: finalize also runs at exit.
        self._finalizer = weakref.finalize(
            self, _terminate, process, self.stop_timeout, self._shm_prefix
        )
        try:
            self._wait_ready(models, started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_ready(self, models: Sequence[str], deadline: float) -> None:
        pending = ["/v2/health/ready"] + [
            f"/v2/models/{urllib.parse.quote(name, safe='')}/ready" for name in models
        ]
        process = self._process
        assert process is not None
        while pending:
            code = process.poll()
            if code is not None:
                raise TritonStartupError(
                    f"tritonserver exited with code {code} before it was ready "
                    f"(log: {self.log_path})",
                    self.log_tail(),
                )
            if http_status(self.http_url + pending[0]) == 200:
                pending.pop(0)
                continue
            if time.monotonic() > deadline:
                waiting = pending[0].removeprefix("/v2/")
                raise TritonStartupTimeout(
                    f"tritonserver was not ready after {self.startup_timeout:g}s "
                    f"(still waiting for {waiting}; log: {self.log_path})",
                    self.log_tail(),
                )
            time.sleep(_POLL_SECONDS)

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout``); safe to call twice."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _terminate(process, self.stop_timeout, self._shm_prefix)
        if self._log_handle is not None:
            self._log_handle.close()
            self._log_handle = None

    def restart(self) -> TritonServer:
        """Stop and start again on the same ports, e.g. after the model repository changed."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop the server and remove the temporary work folder this object created."""
        self.stop()
        if self._own_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None

    def __enter__(self) -> TritonServer:
        # ``__exit__`` does not run when ``__enter__`` raises, so clean up the temp folder here.
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"TritonServer({os.fspath(self.model_repository)!r}, {self.http_url}, {state})"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rtflow.gpu.triton_server",
        description="Serve a Triton model repository on this machine until Ctrl-C.",
    )
    parser.add_argument("--model-repository", required=True, type=Path)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback)")
    parser.add_argument("--http-port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--grpc-port", type=int, default=8001, help="0 picks a free port")
    parser.add_argument("--metrics-port", type=int, default=8002, help="0 picks a free port")
    parser.add_argument(
        "--model",
        dest="models",
        action="append",
        help="model to wait for (repeatable; default: every model in the repository)",
    )
    parser.add_argument(
        "--model-control-mode", choices=["none", "poll", "explicit"], default="none"
    )
    parser.add_argument("--binary", help=f"tritonserver to run (default: ${ENV_BINARY} or wheel)")
    parser.add_argument("--log-file", type=Path, help="server output (default: a temp folder)")
    parser.add_argument("--startup-timeout", type=float, default=120.0)
    parser.add_argument("--gpu", action="store_true", help="keep CUDA memory pools/GPU metrics")
    parser.add_argument(
        "--triton-arg",
        dest="triton_args",
        action="append",
        default=[],
        help="extra tritonserver flag, e.g. --triton-arg=--log-verbose=1 (repeatable)",
    )
    return parser.parse_args(argv)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server in the foreground; SIGTERM is treated like Ctrl-C so the stop is clean.

    Returns 0 after Ctrl-C or SIGTERM, 1 if the server died on its own, 2 if it never started.
    """
    args = _parse_args(argv)
    server = TritonServer(
        args.model_repository,
        host=args.host,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        metrics_port=args.metrics_port,
        models=args.models,
        model_control_mode=args.model_control_mode,
        binary=args.binary,
        log_file=args.log_file,
        startup_timeout=args.startup_timeout,
        gpu=args.gpu,
        extra_args=args.triton_args,
    )
    # SIGINT too: a shell's background job inherits it ignored, and then ``kill -INT`` would not
    # stop the server.
    previous = {
        sig: signal.signal(sig, _raise_keyboard_interrupt)
        for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with server:
            print(
                f"Triton ready in {server.startup_seconds or 0:.1f}s (pid {server.pid})\n"
                f"  HTTP    {server.http_url}\n  gRPC    {server.grpc_url}\n"
                f"  metrics {server.metrics_url}\n  log     {server.log_path}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            while server.is_running:
                time.sleep(0.5)
            print(f"tritonserver exited unexpectedly:\n{server.log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    except TritonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
