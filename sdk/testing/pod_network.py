"""A network namespace for each pod, as each pod of a cluster has an IP of its own: the ports one
pod listens on cannot collide with another's.

The execution tier runs every pod of a namespace in one network namespace (the
workflow-controller's), which is enough for Argo's workflow pods: none listens on a fixed port.
Argo Events' pods do: an EventSource's pod and a Sensor's pod each serve metrics on :7777 (a
constant of Argo Events, not a setting), and the controller's on :7777 too; in one namespace
the second exits (``failed to start metrics server``). :class:`PodNetworks` gives every pod a
:class:`~rtflow.testing.netns.NetworkNamespace` of its own, made when the pod runner starts the
pod's first container and deleted when the pod goes (its processes killed first).

What a pod reaches is what a cluster's Service network would give it, **played**: each
:class:`Service` is a name in the pod's ``/etc/hosts`` and a bridge at ``127.0.0.1:<port>``
inside to a server of the root namespace (the API server at its own port, the NATS server of
the EventBus, a Kafka broker). A server inside a pod is reached from outside the way ``kubectl
port-forward`` reaches it: :meth:`PodNetworks.forward` (a listener on the root namespace's
127.0.0.1 whose connections are dialled inside the pod's namespace).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass

from rtflow.testing.netns import NetworkNamespace


@dataclass(frozen=True)
class Service:
    """``names`` resolve to 127.0.0.1 in every pod, where ``port`` is bridged to ``target``
    (an address of the root namespace)."""

    names: tuple[str, ...]
    port: int
    target: tuple[str, int]


class PodNetworks:
    """One network namespace per pod (by uid), each with ``services`` bridged in."""

    def __init__(self, services: Sequence[Service]) -> None:
        self.services = list(services)
        self._namespaces: dict[str, NetworkNamespace] = {}
        self._lock = threading.Lock()
        self._closed = False

    def for_pod(self, uid: str) -> NetworkNamespace:
        """The pod's namespace, made with its Services on first use."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the pod networks are closed")
            found = self._namespaces.get(uid)
            if found is not None:
                return found
            netns = NetworkNamespace().start()
            self._namespaces[uid] = netns
        try:
            for service in self.services:
                for name in service.names:
                    netns.add_host(name)
                netns.bridge(service.port, service.target)
        except BaseException:
            self.release(uid)
            raise
        return netns

    def get(self, uid: str) -> NetworkNamespace | None:
        with self._lock:
            return self._namespaces.get(uid)

    def forward(self, uid: str, port: int) -> int:
        """``kubectl port-forward`` to the pod's ``port``: a port of the root namespace's
        127.0.0.1 whose connections reach the pod's 127.0.0.1:``port``."""
        netns = self.get(uid)
        if netns is None:
            raise LookupError(f"pod {uid} has no network: it has not been started")
        return netns.forward_in(port)

    def release(self, uid: str) -> None:
        """The pod is gone: what is left in its namespace is killed, the namespace deleted."""
        with self._lock:
            netns = self._namespaces.pop(uid, None)
        if netns is not None:
            with contextlib.suppress(Exception):
                netns.close()

    def namespaces(self) -> list[NetworkNamespace]:
        with self._lock:
            return list(self._namespaces.values())

    def pids(self) -> list[int]:
        with self._lock:
            namespaces = list(self._namespaces.values())
        return [pid for netns in namespaces for pid in netns.pids()]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            uids = list(self._namespaces)
        for uid in uids:
            self.release(uid)
