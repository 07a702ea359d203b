"""A private network namespace with only loopback, and bridges out of it to the root namespace.

Some binaries the tests run listen on every interface at ports they choose themselves: Argo's
workflow-controller serves its metrics on :9090 and its health check on :6060, whatever it is
told. On a shared machine such a server runs in a network namespace of its own (``ip netns
add``), which has nothing but its own loopback: it can listen where it likes and nobody outside
reaches it, nor can it collide with another test's ports.

What runs inside still needs a few servers of the root namespace (the API server, Triton), which
listen on the root namespace's 127.0.0.1. :meth:`NetworkNamespace.bridge` opens a listening
socket *inside* the namespace and forwards each connection it accepts to an address of the root
namespace. The socket is made by a short-lived thread that first joins the namespace
(``setns(CLONE_NEWNET)`` affects only the calling thread, and a socket belongs for life to the
namespace it was made in); accepting and forwarding then happen in threads of the root
namespace. Bytes are copied as they are, so TLS passes through untouched: a client inside that
dials ``127.0.0.1:<port>`` talks to the server outside as if it were local.

``ip netns exec`` also bind-mounts ``/etc/netns/<name>/hosts`` over ``/etc/hosts`` for what it
starts: :meth:`NetworkNamespace.add_host` gives a name (a cluster Service's, ``fraud-triton``)
an address inside the namespace, where a bridge listens.

Creating a namespace needs CAP_SYS_ADMIN (root): :class:`NamespaceUnavailable` says so where
it is missing, and the tests that need one skip with that reason (fail under CI=true).
:meth:`NetworkNamespace.close` kills every process still inside (``ip netns pids``), stops the
bridges and deletes the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Self

CLONE_NEWNET = 0x40000000
_counter = itertools.count()


class NamespaceUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``); nothing was created."""


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetworkNamespace:
    """``rtflow-<pid>-<n>``: loopback up, nothing else."""

    def __init__(self) -> None:
        self.name = f"rtflow-{os.getpid()}-{next(_counter)}"
        self._created = False
        self._listeners: list[socket.socket] = []
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def etc(self) -> Path:
        return Path("/etc/netns") / self.name

    def start(self) -> Self:
        if shutil.which("ip") is None:
            raise NamespaceUnavailable("no `ip` command (iproute2) to make a network namespace")
        made = subprocess.run(["ip", "netns", "add", self.name], capture_output=True, text=True)
        if made.returncode != 0:
            raise NamespaceUnavailable(
                f"cannot make a network namespace (`ip netns add` needs root): "
                f"{made.stderr.strip()}"
            )
        self._created = True
        try:
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True)
        except subprocess.CalledProcessError:
            self.close()
            raise
        return self

    def exec_prefix(self) -> list[str]:
        """The argv prefix that runs a command inside: ``ip netns exec`` execs it, so the
        process started is the command itself (its pid, its parent-death signal)."""
        return ["ip", "netns", "exec", self.name]

    def add_host(self, name: str, address: str = "127.0.0.1") -> None:
        """``name`` resolves to ``address`` for what ``ip netns exec`` starts from now on."""
        self.etc.mkdir(parents=True, exist_ok=True)
        hosts = self.etc / "hosts"
        if not hosts.exists():
            hosts.write_text("127.0.0.1 localhost\n::1 localhost\n")
        with hosts.open("a") as out:
            out.write(f"{address} {name}\n")

    def pids(self) -> list[int]:
        if not self._created:
            return []
        out = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def bridge(self, port: int, target: tuple[str, int], *, host: str = "127.0.0.1") -> None:
        """Listen on ``host:port`` inside the namespace; forward every connection to
        ``target`` in the root namespace."""
        made: list[socket.socket | BaseException] = []

        def listen_inside() -> None:
            try:
                _setns(self.path)  # this thread only; it ends right after
                sock = socket.create_server((host, port), backlog=128)
                made.append(sock)
            except BaseException as exc:  # handed to the caller
                made.append(exc)

        joiner = threading.Thread(target=listen_inside, name=f"{self.name}-listen")
        joiner.start()
        joiner.join()
        (result,) = made
        if isinstance(result, BaseException):
            raise result
        self._listeners.append(result)
        dial = lambda: socket.create_connection(target, timeout=10)  # noqa: E731
        threading.Thread(
            target=self._accept, args=(result, dial), name=f"{self.name}-bridge-{port}",
            daemon=True,
        ).start()  # fmt: skip

    def forward_in(self, port: int, *, host: str = "127.0.0.1") -> int:
        """The other way, as ``kubectl port-forward`` does: listen on a free port of the root
        namespace's 127.0.0.1 and forward every connection to ``host:port`` inside; returns
        the port outside. The socket that dials inside is made by a short-lived thread that
        joins the namespace first, as :meth:`bridge` makes its listener."""
        listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._listeners.append(listener)
        threading.Thread(
            target=self._accept, args=(listener, lambda: self._dial_inside((host, port))),
            name=f"{self.name}-forward-{port}", daemon=True,
        ).start()  # fmt: skip
        return int(listener.getsockname()[1])

    def _dial_inside(self, target: tuple[str, int]) -> socket.socket:
        made: list[socket.socket | BaseException] = []

        def dial() -> None:
            try:
                _setns(self.path)  # this thread only; it ends right after
                made.append(socket.create_connection(target, timeout=10))
            except BaseException as exc:  # handed to the caller
                made.append(exc)

        dialer = threading.Thread(target=dial, name=f"{self.name}-dial")
        dialer.start()
        dialer.join()
        (result,) = made
        if isinstance(result, BaseException):
            raise result
        return result

    def _accept(self, listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
        while True:
            try:
                inside, _ = listener.accept()
            except OSError:  # closed
                return
            try:
                outside = connect()
            except OSError:
                inside.close()
                continue
            outside.settimeout(None)
            with self._lock:
                self._connections += [inside, outside]
            for a, b in ((inside, outside), (outside, inside)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def close(self) -> None:
        for listener in self._listeners:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        self._listeners = []
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self._created:
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)
            self._created = False
        shutil.rmtree(self.etc, ignore_errors=True)
        with contextlib.suppress(OSError):  # /etc/netns itself, when no other namespace uses it
            self.etc.parent.rmdir()
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy one direction until it ends, then pass the end on (half-close)."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)
