"""Loopback addresses of a local server: free ports, whether one is taken, and a client's
view of the server's HTTP endpoints (no proxy, wildcard binds reached through loopback).

Used by :class:`~rtflow.gpu.triton_server.TritonServer` to pick and check its three ports
before starting and to poll its readiness; kept apart because none of it is about Triton.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import socket
import urllib.error
import urllib.request

__all__ = ["free_ports", "http_status", "port_in_use", "url_host"]


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Pick distinct free ports at once, so parallel servers and tests never collide on 8000.

    All sockets stay open until every port is chosen, so the same port is never returned twice.
    """
    with contextlib.ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(_family(host), socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def port_in_use(host: str, port: int) -> bool:
    """Check before starting, since Triton's own message for a taken port is buried in its log.

    SO_REUSEADDR makes a port that only has TIME_WAIT leftovers (a restart) count as free, as it
    is for Triton itself.
    """
    with socket.socket(_family(host), socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def url_host(host: str) -> str:
    """Clients cannot connect to a wildcard address; they reach it through loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    """Build a proxy-free opener: an ``http_proxy`` in the environment must not capture loopback."""
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Return the status code, or ``None`` while nothing answers yet (the server is starting)."""
    try:
        with _opener().open(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except (urllib.error.URLError, http.client.HTTPException, OSError):
        return None
