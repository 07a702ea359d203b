"""A real single-node Apache Kafka 4.x broker (KRaft) for tests and local runs.

The stream plane's promises (order per key, idempotent producers, exactly-once through
transactions, nothing lost over a broker restart) are broker behaviour. A fake would only test
our assumptions about that behaviour, so tests run the real broker jars from Maven Central on a
local JVM instead: no Docker, no download at run time.

Where the pieces come from:

* java 17+: the ``java`` argument, else ``$JAVA_HOME/bin/java`` (as Kafka's own scripts do),
  else ``java`` on PATH.
* the jars: the ``lib_dir`` argument, else ``$RTFLOW_KAFKA_LIB``, else ``kafka/lib`` of rtflow's
  tools folder, found as ``rtflow lint`` finds its tools (:mod:`rtflow.verify.tools_home`:
  ``$RTFLOW_TOOLS``, the checkout of an editable install or of the current folder, the user
  cache), which ``tools/kafka/provision.sh`` fills.
* confluent-kafka, to ask the broker whether it is ready and to create topics.

If one is missing, :class:`KafkaUnavailable` says which, before any process starts. A broker that
starts and then fails to answer raises :class:`KafkaStartError` with the tail of its log.

With ``security=BrokerSecurity(...)`` (see :mod:`rtflow.testing.kafka_security`) the broker
also listens for SASL_SSL, SCRAM over TLS as production clusters are reached, at
``secure_bootstrap_servers``; the PLAINTEXT listener stays for readiness checks and set-up.

Topics are not auto-created by default: a typo in a topic name should fail where it is made,
not quietly create an empty topic that a consumer then waits on for ever. Pass
``auto_create_topics=True`` (or ``--auto-create-topics``) for local experiments.

As a script it runs a broker until Ctrl-C and prints the bootstrap address on stdout::

    python -m rtflow.testing.kafka_broker [--port 9092] [--data-dir DIR] [--topic NAME ...]
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Self

from rtflow.stages.reaper import parent_death_signal, terminate_then_kill
from rtflow.testing.kafka_prerequisites import (
    ENV_LIB,
    KafkaUnavailable,
    default_lib_dir,
    find_jars,
    find_java,
    require_client,
)
from rtflow.testing.kafka_security import BrokerSecurity, properties_text
from rtflow.testing.kafka_settings import NODE_ID, jvm_command, server_properties
from rtflow.testing.kraft_controller import KraftController, accepts_connections

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

__all__ = [
    "ENV_LIB",
    "KafkaBroker",
    "KafkaStartError",
    "KafkaUnavailable",
    "default_lib_dir",
    "find_jars",
    "find_java",
]

_LOG_TAIL_LINES = 40


class KafkaStartError(RuntimeError):
    """The broker process ran but did not come up; the message ends with its log tail."""


def _admin_client(bootstrap: str) -> AdminClient:
    require_client()
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def _free_port() -> int:
    """A loopback port that was free a moment ago (the broker binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cluster_id() -> str:
    """A Kafka Uuid in its text form (URL-safe base64, no padding), without a JVM round trip.

    Never one that starts with "-" (one in 64 would): kafka-storage's argument parser reads
    that as an option and fails with "--cluster-id: expected one argument". Kafka's own
    Uuid.randomUuid() skips those for the same reason.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError as exc:
        return f"(no log: {exc})\n"


class KafkaBroker:
    """One Kafka 4.x process acting as both KRaft controller and broker on 127.0.0.1.

    The work folder (a fresh temporary one unless ``work_dir`` is given) holds the config, the
    data and ``broker.log`` (the process's stdout and stderr, appended across restarts). Ports are
    picked on the first :meth:`start` and kept, so :meth:`restart` brings the same address back
    over the same data: clients see a broker that went away and came back, which is what the
    durability tests need. :meth:`close` (or leaving the ``with`` block) stops the broker and
    deletes a temporary work folder; a given ``work_dir`` is always kept.

    ``security`` adds a SASL_SSL listener on a port of its own, with the given certificate and
    SCRAM users. The users are written when the storage is formatted, that is on the first
    start in a work folder: a kept ``work_dir`` formatted without them does not gain them.

    Every internal topic (consumer offsets, transaction state, share-group state) has
    replication factor 1 and a handful of partitions: with one node a larger factor makes
    idempotent and transactional producers fail, and the default 50 partitions each cost
    start-up time on first use.

    ``production_jvm`` starts it with Kafka's own JVM flags (G1, C2) instead of the quicker
    starting test flags: for benchmarks, whose figures must hold for a real broker.
    ``jvm_options`` come after those (a benchmark's safepoint log, say); one that picks a
    collector (``-XX:+UseZGC``) replaces the production flags' G1 settings.

    ``dedicated_controller`` runs the KRaft controller in a JVM of its own, as production
    clusters do, and the broker as a broker only: :meth:`kill` and :meth:`restart` then act
    on the broker alone, and :meth:`close` stops both. Broker failover tests need it; see
    :mod:`rtflow.testing.kraft_controller` for what a ``kill -9`` of a combined node does to
    transactions.
    """

    _finalizer: weakref.finalize[[subprocess.Popen[bytes], float], KafkaBroker] | None

    def __init__(
        self,
        *,
        lib_dir: str | os.PathLike[str] | None = None,
        java: str | os.PathLike[str] | None = None,
        work_dir: str | os.PathLike[str] | None = None,
        port: int | None = None,
        heap: str = "512m",
        auto_create_topics: bool = False,
        config: Mapping[str, str] | None = None,
        start_timeout: float = 60.0,
        security: BrokerSecurity | None = None,
        production_jvm: bool = False,
        dedicated_controller: bool = False,
        jvm_options: Sequence[str] = (),
    ) -> None:
        self._lib_arg = lib_dir
        self._production_jvm = production_jvm
        self._jvm_options = tuple(jvm_options)
        self._dedicated_controller = dedicated_controller
        self._controller: KraftController | None = None
        self._java_arg = java
        self._work_dir = Path(work_dir) if work_dir is not None else None
        self._owns_work_dir = work_dir is None
        self._requested_port = port
        self._heap = heap
        self._auto_create_topics = auto_create_topics
        self._extra_config = dict(config or {})
        self.start_timeout = start_timeout
        self.security = security
        self._java: Path | None = None
        self._lib: Path | None = None
        self._port: int | None = None
        self._controller_port: int | None = None
        self._secure_port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer = None

    # -- public surface ---------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>``; known from the first start on and stable across restarts."""
        if self._port is None:
            raise RuntimeError("KafkaBroker has not been started: its port is not chosen yet")
        return f"127.0.0.1:{self._port}"

    @property
    def secure_bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>`` of the SASL_SSL listener; only with ``security``.

        Clients need :meth:`BrokerSecurity.client_config` (or the ``KAFKA_*`` variables of
        :meth:`BrokerSecurity.client_env`) to talk to it. The PLAINTEXT listener stays open
        beside it for set-up (readiness, topics), so tests of the secure path test only that.
        """
        if self.security is None:
            raise RuntimeError("KafkaBroker was made without security=: it has no SASL_SSL port")
        if self._secure_port is None:
            raise RuntimeError("KafkaBroker has not been started: its port is not chosen yet")
        return f"127.0.0.1:{self._secure_port}"

    @property
    def pid(self) -> int | None:
        """The broker JVM's process id while it runs (benchmarks read its CPU time)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def controller_pid(self) -> int | None:
        """The dedicated controller's process id while it runs (None in combined mode)."""
        return self._controller.pid if self._controller is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def work_dir(self) -> Path:
        if self._work_dir is None:
            raise RuntimeError("KafkaBroker has not been started: it has no work folder yet")
        return self._work_dir

    @property
    def log_path(self) -> Path:
        return self.work_dir / "broker.log"

    @property
    def kafka_version(self) -> str:
        """The version of the jars in use, read from the broker jar's name."""
        jar = next(find_jars(self._lib or self._lib_arg).glob("kafka_2.13-*.jar"))
        return jar.name.removeprefix("kafka_2.13-").removesuffix(".jar")

    def start(self) -> Self:
        """Start the broker and return once it answers a metadata request.

        Raises :class:`KafkaUnavailable` before starting anything if a prerequisite is missing,
        and :class:`KafkaStartError` (with the log tail; the process is stopped) if it does not
        come up within ``start_timeout`` seconds. Calling it on a running broker does nothing.
        """
        if self.running:
            return self
        self._forget_process()  # one that died on its own still has a finalizer registered
        # Resolve everything that can be missing before any process or folder exists.
        self._java = self._java or find_java(self._java_arg)
        self._lib = self._lib or find_jars(self._lib_arg)
        require_client()

        if self._work_dir is None:
            self._work_dir = Path(tempfile.mkdtemp(prefix="rtflow-kafka-"))
        self._work_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = self._requested_port or _free_port()
        while self._controller_port is None or self._controller_port == self._port:
            self._controller_port = _free_port()
        while self.security is not None and (
            self._secure_port is None or self._secure_port in (self._port, self._controller_port)
        ):
            self._secure_port = _free_port()

        props = self._work_dir / "server.properties"
        props.write_text(self._server_properties(), encoding="utf-8")
        log4j = self._work_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2_PROPERTIES, encoding="utf-8")
        if self._dedicated_controller and self._controller is None:
            self._controller = KraftController(
                self._work_dir / "controller", self._controller_port, self._jvm, properties_text
            )
        if self._controller is not None:
            self._controller.write_config(_LOG4J2_PROPERTIES)
        if not (self._data_dir / "meta.properties").exists():
            self._format_storage(props, _cluster_id())
        if self._controller is not None:
            self._controller.start(self.start_timeout)

        with self.log_path.open("ab") as log:
            log.write(f"---- rtflow: starting kafka.Kafka on {self.bootstrap_servers}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [*self._jvm(self._heap, log4j), "kafka.Kafka", str(props)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._work_dir,
                # The kernel kills the JVM if this process dies without close() (kill -9 of
                # `rtflow run --local`, of a test session): the finalizer below cannot run then.
                # Started from the main thread only: the signal follows the starting thread.
                preexec_fn=parent_death_signal(),
            )
        # Stops a broker left running when the interpreter exits without close() (a test
        # session that errors out): an orphaned JVM would hold its ports and 512 MiB.
        self._finalizer = weakref.finalize(self, terminate_then_kill, self._proc, 10.0)
        try:
            self._wait_until_ready()
        except BaseException:
            self.kill()
            raise
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Shut down cleanly (SIGTERM), killing after ``timeout`` s; data and ports are kept."""
        if self._proc is not None:
            terminate_then_kill(self._proc, timeout)
        self._forget_process()

    def kill(self) -> None:
        """SIGKILL, as a crash would: what was acknowledged must still be there after start()."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._forget_process()

    def restart(self, *, kill: bool = False) -> None:
        """Stop (or kill) and start again on the same ports over the same data.

        After a kill the start takes about 3 s longer (the broker session timeout, see
        ``_server_properties``): the controller must first give up on the dead registration.
        """
        if kill:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the broker (and its controller) and delete a temporary work folder."""
        self.stop()
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
        if self._owns_work_dir and self._work_dir is not None:
            shutil.rmtree(self._work_dir, ignore_errors=True)
            self._work_dir = None
            self._port = self._controller_port = self._secure_port = None

    def create_topics(
        self,
        *names: str,
        partitions: int = 1,
        config: Mapping[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create topics and wait until every partition has a leader.

        The wait matters: creation returns once the controller committed the topic, and a
        producer that comes in before the broker's metadata caught up gets retriable errors
        that would make tests slow or flaky rather than fail.
        """
        admin = _admin_client(self.bootstrap_servers)
        # Documented as confluent_kafka.admin.NewTopic, but only re-exported there implicitly
        # (mypy --strict rejects that); cimpl is where it is defined.
        from confluent_kafka.cimpl import NewTopic

        settings = dict(config or {})
        new = [
            NewTopic(n, num_partitions=partitions, replication_factor=1, config=settings)
            for n in names
        ]
        for future in admin.create_topics(
            new, operation_timeout=timeout, request_timeout=timeout
        ).values():
            future.result(timeout)
        deadline = time.monotonic() + timeout
        pending = set(names)
        while pending:
            meta = admin.list_topics(timeout=max(deadline - time.monotonic(), 0.1))
            for name in list(pending):
                topic = meta.topics.get(name)
                if (
                    topic is not None
                    and topic.error is None
                    and len(topic.partitions) == partitions
                    and all(p.leader >= 0 for p in topic.partitions.values())
                ):
                    pending.discard(name)
            if pending and time.monotonic() > deadline:
                raise TimeoutError(f"no leader after {timeout:g} s for topics {sorted(pending)}")
            if pending:
                time.sleep(0.05)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f"127.0.0.1:{self._port}" if self._port else "not started"
        return f"KafkaBroker({where}, running={self.running})"

    # -- internals --------------------------------------------------------------------------

    @property
    def _data_dir(self) -> Path:
        return self.work_dir / "data"

    def _jvm(self, heap: str, log4j: Path) -> list[str]:
        assert self._java is not None and self._lib is not None
        return jvm_command(
            self._java,
            self._lib,
            heap=heap,
            log4j=log4j,
            production=self._production_jvm,
            options=self._jvm_options,
        )

    def _server_properties(self) -> str:
        assert self._port is not None and self._controller_port is not None
        return server_properties(
            port=self._port,
            controller_port=self._controller_port,
            data_dir=self._data_dir,
            auto_create_topics=self._auto_create_topics,
            security=self.security,
            secure_port=self._secure_port,
            dedicated_controller=self._dedicated_controller,
            extra=self._extra_config,
        )

    def _format_storage(self, props: Path, cluster_id: str) -> None:
        """Write meta.properties and the bootstrap metadata: KRaft will not start without them.

        With a dedicated controller both nodes are formatted with the same cluster id, and the
        bootstrap metadata (SCRAM users) goes to the controller, which owns the metadata log.
        """
        log4j = self.work_dir / "log4j2.properties"
        broker = [
            *self._jvm("256m", log4j),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(props),
        ]
        commands = [broker]
        if self._controller is not None and not self._controller.formatted:
            commands.insert(0, self._controller.format_command(cluster_id))
        # SCRAM users go into the bootstrap metadata, so they exist before the first client
        # connects; the log names them but never shows a password.
        for user in self.security.users if self.security is not None else ():
            commands[0] += ["--add-scram", user.storage_argument()]
        for cmd in commands:
            self._run_format(cmd)

    def _run_format(self, cmd: list[str]) -> None:
        shown = re.sub(r"password=[^\]]*", "password=***", " ".join(cmd[cmd.index("format") :]))
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        with self.log_path.open("a", encoding="utf-8") as log:
            log.write(f"---- rtflow: {shown}\n{out.stdout}{out.stderr}")
        if out.returncode != 0:
            raise KafkaStartError(
                f"formatting Kafka storage in {self._data_dir} failed (exit {out.returncode}):\n"
                f"{out.stdout}{out.stderr}"
            )

    def _wait_until_ready(self) -> None:
        """Poll until a metadata request lists this broker: only then can it take writes.

        The TCP port opens before the broker is registered and unfenced, so an open port alone
        would let a test race the broker's own start-up.
        """
        assert self._proc is not None and self._port is not None
        deadline = time.monotonic() + self.start_timeout
        admin: AdminClient | None = None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise KafkaStartError(
                    f"Kafka broker exited with code {code} before answering on "
                    f"{self.bootstrap_servers}; last lines of {self.log_path}:\n"
                    f"{_log_tail(self.log_path)}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaStartError(
                    f"Kafka broker did not answer on {self.bootstrap_servers} within "
                    f"{self.start_timeout:g} s; last lines of {self.log_path}:\n"
                    f"{_log_tail(self.log_path)}"
                )
            # Create the client only once the port accepts connections: before that it would
            # log connection-refused errors and back off for longer than the broker needs.
            if admin is None and accepts_connections(self._port):
                admin = _admin_client(self.bootstrap_servers)
            if admin is not None:
                from confluent_kafka import KafkaException

                try:
                    meta = admin.list_topics(timeout=min(remaining, 2.0))
                except KafkaException:
                    pass
                else:
                    if NODE_ID in meta.brokers:
                        return
            time.sleep(0.05)

    def _forget_process(self) -> None:
        self._proc = None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None


# Everything to stdout, which start() sends to broker.log. Log4j's own shutdown hook is off:
# it would stop logging while Kafka's shutdown hook is still writing its last, most useful
# lines.
_LOG4J2_PROPERTIES = """\
status = error
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = out
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run a broker until Ctrl-C or SIGTERM; the bootstrap address is the only stdout line."""
    parser = argparse.ArgumentParser(
        prog="python -m rtflow.testing.kafka_broker",
        description="Run a single-node Apache Kafka broker on 127.0.0.1 until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, help="client port (default: a free one)")
    parser.add_argument("--data-dir", help="keep config, data and log here (default: temporary)")
    parser.add_argument("--lib", help=f"the broker jars' folder (default: ${ENV_LIB} or .tools)")
    parser.add_argument("--topic", action="append", default=[], help="create this topic (repeat)")
    parser.add_argument("--partitions", type=int, default=1, help="partitions per --topic")
    parser.add_argument("--auto-create-topics", action="store_true")
    args = parser.parse_args(argv)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # unwinds through the finally below, which stops the broker

    signal.signal(signal.SIGTERM, on_sigterm)
    broker = KafkaBroker(
        lib_dir=args.lib,
        work_dir=args.data_dir,
        port=args.port,
        auto_create_topics=args.auto_create_topics,
    )
    try:
        try:
            broker.start()
        except (KafkaUnavailable, KafkaStartError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2 if isinstance(exc, KafkaUnavailable) else 1
        existing = set(_admin_client(broker.bootstrap_servers).list_topics(timeout=10).topics)
        new_topics = [t for t in args.topic if t not in existing]
        if new_topics:
            broker.create_topics(*new_topics, partitions=args.partitions)
        print(broker.bootstrap_servers, flush=True)
        print(
            f"Kafka {broker.kafka_version} on {broker.bootstrap_servers}; "
            f"log {broker.log_path}; Ctrl-C stops it",
            file=sys.stderr,
            flush=True,
        )
        while broker.running:
            time.sleep(0.5)
        print(f"error: the broker exited:\n{_log_tail(broker.log_path)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.close()


if __name__ == "__main__":
    sys.exit(main())
