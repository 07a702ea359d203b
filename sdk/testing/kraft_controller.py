"""A KRaft controller in a JVM of its own, beside a broker-only :class:`KafkaBroker`.

Production Kafka clusters run their controllers apart from their brokers (dedicated controller
nodes, Strimzi node pools), and a broker crash there is the failover case that matters: the
controller sees the broker's session end, fences it, and takes it back through a fresh
registration when it returns. ``KafkaBroker(dedicated_controller=True)`` runs that topology on
one machine, so a test that kills the broker with ``kill -9`` tests that case.

In combined mode (one process as both controller and broker, the quicker default) a
``kill -9`` also kills the controller, and on restart the node briefly replays a metadata image
in which it still leads every partition while its own registration is fenced. Measured on
Kafka 4.4 (issue #10's note): a transaction whose commit was prepared just before the kill is
completed by the restarted transaction coordinator in that window, finds no leader endpoint for
its partitions, takes them for deleted and skips their markers
(``TransactionMarkerChannelManager``: "these partitions are likely deleted already and hence
can be skipped"). The transaction is then complete for the coordinator and open for the
partitions: ``read_committed`` readers stop at its first record, and the consumer group whose
offsets it held cannot fetch them. Nothing rtflow's clients do can mend that (it takes
``kafka-transactions.sh abort``), and it is not what a production cluster does, so the broker
failover tests use this topology.
"""

from __future__ import annotations

import socket
import subprocess
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rtflow.stages.reaper import parent_death_signal, terminate_then_kill

CONTROLLER_ID = 2
CONTROLLER_LISTENER = "CONTROLLER"

JvmCommand = Callable[[str, Path], list[str]]
"""Builds the java command line (without the main class) for a heap size and a log4j file."""


def controller_settings(node_id: int, address: str, data_dir: Path) -> dict[str, str]:
    """The properties of a controller-only node that is the single voter at ``address``."""
    return {
        "process.roles": "controller",
        "node.id": str(node_id),
        "controller.quorum.voters": f"{node_id}@{address}",
        "controller.listener.names": CONTROLLER_LISTENER,
        "listeners": f"{CONTROLLER_LISTENER}://{address}",
        "listener.security.protocol.map": f"{CONTROLLER_LISTENER}:PLAINTEXT",
        "log.dirs": str(data_dir),
        # The broker's session: how long after a crash the controller fences it. Kept short as
        # for the combined node (see rtflow.testing.kafka_settings.server_properties).
        "broker.session.timeout.ms": "3000",
    }


class KraftController:
    """One controller-only Kafka process: configured, formatted, started, stopped.

    Its folder holds ``controller.properties``, ``data/`` and ``controller.log``. It has no
    client port; the broker reaches it at ``127.0.0.1:<port>``.
    """

    def __init__(
        self,
        work_dir: Path,
        port: int,
        jvm: JvmCommand,
        properties: Callable[[Mapping[str, str]], str],
    ) -> None:
        self.work_dir = work_dir
        self.port = port
        self._jvm = jvm
        self._properties_text = properties
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: (
            weakref.finalize[[subprocess.Popen[bytes], float], KraftController] | None
        ) = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.work_dir / "controller.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def _data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def _props(self) -> Path:
        return self.work_dir / "controller.properties"

    @property
    def formatted(self) -> bool:
        return (self._data_dir / "meta.properties").exists()

    def write_config(self, log4j_text: str) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        settings = controller_settings(CONTROLLER_ID, self.address, self._data_dir)
        self._props.write_text(self._properties_text(settings), encoding="utf-8")
        (self.work_dir / "log4j2.properties").write_text(log4j_text, encoding="utf-8")

    def format_command(self, cluster_id: str, extra: Sequence[str] = ()) -> list[str]:
        """The storage format command; ``extra`` carries bootstrap records (SCRAM users)."""
        log4j = self.work_dir / "log4j2.properties"
        return [
            *self._jvm("256m", log4j),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self._props),
            *extra,
        ]

    def start(self, timeout: float) -> None:
        """Start it (if it is not running) and wait until its listener accepts connections."""
        if self.running:
            return
        with self.log_path.open("ab") as log:
            log.write(f"---- rtflow: starting a KRaft controller on {self.address}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [
                    *self._jvm("256m", self.work_dir / "log4j2.properties"),
                    "kafka.Kafka",
                    str(self._props),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                preexec_fn=parent_death_signal(),
            )
        self._finalizer = weakref.finalize(self, terminate_then_kill, self._proc, 30.0)
        deadline = time.monotonic() + timeout
        while not accepts_connections(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"the KRaft controller did not listen on {self.address} within {timeout:g} s; "
                    f"see {self.log_path}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None:
            terminate_then_kill(self._proc, 30.0)
        self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None


def accepts_connections(port: int) -> bool:
    """Something listens on 127.0.0.1:``port`` (a server's readiness before its protocol)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
