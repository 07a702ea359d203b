"""A real NATS server with JetStream: the events tier's EventBus (:mod:`rtflow.testing.events`).

``tools/build-go-tools.sh nats-server`` builds ``nats-server`` from its Go module at v2.10.29, the
NATS release Argo Events v1.9.11 runs for a JetStream EventBus (``nats:2.10.29`` in its
controller-config). It listens on this machine's 127.0.0.1 at a free port, JetStream on with
its store in a work folder, TLS with a certificate for ``hosts`` made here (Argo Events'
JetStream client insists on TLS: ``nats.Secure`` always; :attr:`NatsServer.ca_pem` is its CA),
its monitoring endpoint on another port (the tests read its consumers there); nothing else (no
cluster routes, no auth).

What a cluster would run instead is the StatefulSet the Argo Events controller makes for an
EventBus with ``spec.jetstream`` (three replicas, a config reloader, a metrics exporter): no
kubelet here runs StatefulSets, so the events tier declares the bus as ``jetstreamExotic`` (a
JetStream Argo Events does not manage) pointing at this server; the EventSources and Sensors
speak to it with Argo Events' own JetStream client, as they would to the managed one.
:meth:`NatsServer.close` stops it (SIGTERM, then SIGKILL); a test session that dies takes it
along (parent-death signal).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Self

from rtflow.stages.reaper import parent_death_signal
from rtflow.stages.stream.launcher import free_port
from rtflow.testing.control_plane import ControlPlaneUnavailable, default_bin_dir
from rtflow.testing.supervised import SupervisedProcess, terminate

NATS_VERSION = "v2.10.29"  # tools/nats-server/go.mod


class NatsServer(SupervisedProcess):
    """``nats-server -js`` on 127.0.0.1:``port`` (free unless given)."""

    def __init__(
        self,
        work_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        port: int = 0,
        hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
    ) -> None:
        super().__init__()
        self.hosts = hosts
        self.ca_pem = ""
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir
        self._bin_dir = bin_dir
        self.port = port
        self.monitor_port = 0

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Self:
        binary = (self._bin_dir or default_bin_dir()) / "nats-server"
        if not os.access(binary, os.X_OK):
            raise ControlPlaneUnavailable(
                f"nats-server not built in {binary.parent}: run tools/build-go-tools.sh nats-server"
            )
        self.work_dir = self._work_folder("rtflow-nats-")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_path = self.work_dir / "nats-server.log"
        self.port = self.port or free_port()
        import trustme

        ca = trustme.CA()
        serving = ca.issue_cert(*self.hosts)
        serving.cert_chain_pems[0].write_to_path(str(self.work_dir / "server.crt"))
        serving.private_key_pem.write_to_path(str(self.work_dir / "server.key"))
        self.ca_pem = ca.cert_pem.bytes().decode()
        self.monitor_port = free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(binary), "--addr=127.0.0.1", f"--port={self.port}", "--jetstream",
                 f"--store_dir={self.work_dir / 'jetstream'}", "--server_name=rtflow-eventbus",
                 "--tls", f"--tlscert={self.work_dir / 'server.crt'}",
                 f"--tlskey={self.work_dir / 'server.key'}",
                 f"--http_port={self.monitor_port}"],  # on --addr, as the clients
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=parent_death_signal(),
            )  # fmt: skip
        self._supervise(proc, terminate)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-3000:]
                self.close()
                raise RuntimeError(f"nats-server did not start:\n{tail}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        """The server greets a client with its INFO line, JetStream enabled."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as conn:
                return b'"jetstream":true' in conn.recv(4096)
        except OSError:
            return False

    def consumers(self) -> list[dict[str, Any]]:
        """Every JetStream consumer (its ``stream_name``, ``name`` and ``config``), from the
        server's monitoring endpoint (``/jsz``)."""
        import json
        import urllib.request

        url = f"http://127.0.0.1:{self.monitor_port}/jsz?accounts=true&streams=true&consumers=true&config=true"
        with urllib.request.urlopen(url, timeout=5) as answer:
            report = json.loads(answer.read())
        return [
            {"stream_name": stream.get("name"), **consumer}
            for account in report.get("account_details") or []
            for stream in account.get("stream_detail") or []
            for consumer in stream.get("consumer_detail") or []
        ]
