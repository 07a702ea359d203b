"""What a local Kafka broker is started with: its JVM command line and ``server.properties``.

Pure functions of the broker's ports, folders and options (:class:`~rtflow.testing.kafka_broker.
KafkaBroker` owns the process): the settings are the part of a test broker that decides how
close it behaves to a production one, so they are read and reviewed on their own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from rtflow.testing.kafka_security import (
    BrokerSecurity,
    properties_text,
    sasl_ssl_listener_settings,
)
from rtflow.testing.kraft_controller import CONTROLLER_ID

__all__ = ["NODE_ID", "jvm_command", "server_properties"]

NODE_ID: Final = 1
_COLLECTOR = re.compile(r"-XX:\+Use\w+GC")
_G1_ONLY = ("-XX:MaxGCPauseMillis", "-XX:InitiatingHeapOccupancyPercent")


def jvm_command(
    java: Path,
    lib: Path,
    *,
    heap: str,
    log4j: Path,
    production: bool,
    options: Sequence[str],
) -> list[str]:
    """``java`` and its flags up to the main class (the caller adds the class and arguments)."""
    # C1 only and the serial collector: about half the start-up time on two cores, and a
    # test broker never runs long enough for C2 or a concurrent GC to pay off. Benchmarks
    # ask for Kafka's own production flags (kafka-run-class.sh): the test flags cost 86 %
    # of a core against 52 % under load, and double p99 (measured, ../design notes).
    flags = (
        [f"-Xms{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
         "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"]
        if production
        else ["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
    )  # fmt: skip
    if any(_COLLECTOR.fullmatch(option) for option in options):
        # Two collectors are a JVM start-up error; so are G1's options under another.
        flags = [f for f in flags if not f.startswith(_G1_ONLY) and not _COLLECTOR.fullmatch(f)]
    return [
        str(java),
        f"-Xmx{heap}",
        *flags,
        *options,
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        str(lib / "*"),
    ]


def server_properties(
    *,
    port: int,
    controller_port: int,
    data_dir: Path,
    auto_create_topics: bool,
    security: BrokerSecurity | None,
    secure_port: int | None,
    dedicated_controller: bool,
    extra: Mapping[str, str],
) -> str:
    """The broker's ``server.properties``: one node, test-sized, with production semantics."""
    controller = f"127.0.0.1:{controller_port}"
    settings: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        # A static one-voter quorum: the controller address lives in this file rather than
        # in the formatted metadata log (as with `format --standalone`), so a kept data
        # folder can be started again on other ports.
        "controller.quorum.voters": f"{NODE_ID}@{controller}",
        "controller.listener.names": "CONTROLLER",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://{controller}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        "auto.create.topics.enable": str(auto_create_topics).lower(),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        # A new consumer group would otherwise wait 3 s for more members before its first
        # assignment: pure latency in tests.
        "group.initial.rebalance.delay.ms": "0",
        # The 128 MiB default is allocated up front and is a quarter of the small heap.
        "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
        # After a kill the restarted controller refuses the broker's new registration
        # (DUPLICATE_BROKER_REGISTRATION) until the old session times out: 9 s by default,
        # 3 s here; the heartbeat is shortened to match so a slow machine is not fenced.
        "broker.heartbeat.interval.ms": "500",
        "broker.session.timeout.ms": "3000",
        "num.network.threads": "2",
        "num.io.threads": "4",
    }
    if security is not None:
        assert secure_port is not None
        settings.update(_secure_listener_settings(port, controller_port, secure_port, security))
    if dedicated_controller:
        # A broker only: the controller is its own process (rtflow.testing.kraft_controller)
        # and the single voter; this node keeps the CONTROLLER listener's name and protocol
        # to reach it, not the listener.
        settings["process.roles"] = "broker"
        settings["controller.quorum.voters"] = f"{CONTROLLER_ID}@{controller}"
        settings["listeners"] = ",".join(
            listener
            for listener in settings["listeners"].split(",")
            if not listener.startswith("CONTROLLER://")
        )
    settings.update(extra)
    return properties_text(settings)


def _secure_listener_settings(
    port: int, controller_port: int, secure_port: int, security: BrokerSecurity
) -> dict[str, str]:
    """A SASL_SSL listener beside PLAINTEXT (its settings are shared with e2e's broker)."""
    secure = f"SASL_SSL://127.0.0.1:{secure_port}"
    return {
        "listeners": f"PLAINTEXT://127.0.0.1:{port},{secure},"
        f"CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},{secure}",
        "listener.security.protocol.map": (
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL"
        ),
        **sasl_ssl_listener_settings(security),
    }
