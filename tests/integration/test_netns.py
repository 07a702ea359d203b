"""The private network namespace the execution tier runs Argo's controller and the pods in:
what listens inside is out of reach from here, and a bridge carries connections out to a
server of this namespace, in both directions and to the end of the stream."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import component_missing

from rtflow.testing.netns import NamespaceUnavailable, NetworkNamespace

pytestmark = pytest.mark.integration


@pytest.fixture
def netns() -> Iterator[NetworkNamespace]:
    namespace = NetworkNamespace()
    try:
        namespace.start()
    except NamespaceUnavailable as exc:
        component_missing(str(exc))
    try:
        yield namespace
    finally:
        namespace.close()


def _inside(netns: NetworkNamespace, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*netns.exec_prefix(), sys.executable, "-c", code],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_a_bridge_carries_a_connection_out_and_back(netns: NetworkNamespace) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo_upper() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while chunk := conn.recv(65536):  # to the client's half-close
                data += chunk
            conn.sendall(data.upper())

    thread = threading.Thread(target=echo_upper, daemon=True)
    thread.start()
    netns.bridge(7000, ("127.0.0.1", port))
    netns.add_host("echo.svc")
    code = (
        "import socket\n"
        "s = socket.create_connection(('echo.svc', 7000))\n"
        "s.sendall(b'x' * 200000); s.shutdown(socket.SHUT_WR)\n"
        "got = b''\n"
        "while c := s.recv(65536): got += c\n"
        "print(len(got), got[:3].decode())\n"
    )
    result = _inside(netns, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["200000", "XXX"]
    thread.join(10)
    server.close()


def test_what_listens_inside_is_not_reachable_from_outside(netns: NetworkNamespace) -> None:
    with socket.socket() as probe:  # a port free here: nothing outside listens on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = subprocess.Popen(
        [*netns.exec_prefix(), sys.executable, "-c",
         "import socket, sys\n"
         f"s = socket.create_server(('0.0.0.0', {port})); print('up', flush=True)\n"
         "s.accept()\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
        assert listener.pid in netns.pids()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        # Inside, the same address answers: the namespace has its own loopback.
        inside = _inside(netns, f"import socket; socket.create_connection(('127.0.0.1', {port}))")
        assert inside.returncode == 0, inside.stderr
    finally:
        listener.kill()
        listener.wait()


def test_close_kills_what_is_left_inside_and_deletes_the_namespace() -> None:
    namespace = NetworkNamespace()
    try:
        namespace.start()
    except NamespaceUnavailable as exc:
        component_missing(str(exc))
    sleeper = subprocess.Popen([*namespace.exec_prefix(), "sleep", "600"])
    try:
        # `ip netns exec` enters the namespace after it has started: wait until it has (a
        # loaded CI machine read the namespace's pids before)
        deadline = time.monotonic() + 10
        while sleeper.pid not in namespace.pids() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sleeper.pid in namespace.pids()
        namespace.close()
        assert sleeper.wait(timeout=10) == -9
        assert not Path(namespace.path).exists()
    finally:
        sleeper.kill()
        namespace.close()
