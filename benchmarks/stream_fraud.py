"""The stream plane's headline figure: the fraud hot path, exactly once, on this machine.

    python benchmarks/stream_fraud.py --write        # about 7 minutes; BENCHMARKS.md section

A real Kafka broker (Kafka's production JVM flags, its collector ZGC by default: ``--broker-gc
g1`` for Kafka's own G1, whose pauses of 20-35 ms each reach every request in flight, measured:
BENCHMARKS.md) and a real Triton (CPU, the example's
Python-backend scorer) on 127.0.0.1. For each point a load generator process offers a fixed
rate of transactions (each key carries its send time), the system under test runs in its own
processes, and a reader process consumes the decisions ``read_committed``: end-to-end latency
is send time to visible to that reader. The first seconds are warm-up and not counted. CPU is
read from /proc for every process tree (broker, Triton with its Python stub, the workers, the
generator, the reader) over the measured window.

Systems, in the same run: rtflow's stream workers (exactly-once and at-least-once); the
hand-written confluent-kafka + tritonclient loop (benchmarks/stream/handwritten.py,
at-least-once and transactional); Quix Streams with exactly-once (benchmarks/stream/
quix_peer.py, in .tools/quix-venv). No assertion on any figure: the numbers are the output.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from jvm_pauses import log_option, pauses
from stream_measures import cpu_seconds, pct, worker_profile

from rtflow.stages.reaper import parent_death_signal

ROOT = Path(__file__).resolve().parents[1]
HOT_PATH = str(ROOT / "benchmarks" / "stream" / "fraud_hot_path.py")
PASSTHROUGH = str(ROOT / "benchmarks" / "stream" / "passthrough_path.py")
# The floor: the same topics and guarantee with no stage and no Triton (--floor, and the
# default plan's exactly-once 20,000/s point): what Kafka's exactly-once costs here.
FLOOR = ("rtflow passthrough", "hand-written passthrough")
HANDWRITTEN = str(ROOT / "benchmarks" / "stream" / "handwritten.py")
QUIX = str(ROOT / "benchmarks" / "stream" / "quix_peer.py")
CHAIN = str(ROOT / "benchmarks" / "stream" / "measuring_chain.py")
QUIX_PYTHON = ROOT / ".tools" / "quix-venv" / "bin" / "python"
HEADING = "## Stream plane: fraud hot path, exactly once"
REPEAT_HEADING = "## Stream plane: exactly once at 20,000 events/s, repeated"
CACHE_HEADING = "## Stream plane: repeated requests and answer caches"


@dataclass
class Point:
    system: str
    guarantee: str
    offered: int
    partitions: int
    workers: int
    achieved: float = 0.0  # outputs of the events sent in the window, per second
    drained: float = 0.0  # outputs that arrived in the window, per second (saturation rate)
    p50: float = float("nan")
    p99: float = float("nan")
    p999: float = float("nan")
    duplicates: int = 0
    cpu: dict[str, float] = field(default_factory=dict)  # component -> cores
    cpu_us_per_event: float = float("nan")
    profile: dict[str, float] = field(default_factory=dict)
    broker_pauses: str = ""
    pause_summary: str = ""  # count / longest ms, for the table


class Bench:
    def __init__(
        self,
        seconds: float,
        warmup: float,
        keep_logs: Path | None = None,
        reader_min_bytes: int = 65536,
        broker_jvm: Sequence[str] = (),
        repeated: float | None = None,
    ) -> None:
        self.reader_min_bytes = reader_min_bytes
        self.repeated = repeated  # the generator's share of repeated transactions
        self.logs: list[Path] = []
        self.keep_logs = keep_logs  # where each point's process logs go, instead of deleted
        self.points_run = 0
        from rtflow.stages.inference import local_triton_server, needs_triton
        from rtflow.stages.stream.launcher import load_stream_pipeline
        from rtflow.testing.kafka_broker import KafkaBroker

        self.seconds = seconds
        self.warmup = warmup
        # Every stop-the-world pause of the broker, counted per point (jvm_pauses.py).
        self.safepoints = Path(
            tempfile.mkstemp(prefix="rtflow-bench-safepoints-", suffix=".log")[1]
        )
        self.broker_jvm = tuple(broker_jvm)
        self.broker = KafkaBroker(
            production_jvm=True, heap="1g", jvm_options=[*broker_jvm, log_option(self.safepoints)]
        ).start()
        pipeline = load_stream_pipeline(HOT_PATH)
        self.triton = local_triton_server(pipeline, needs_triton(pipeline)).start()
        self.triton_address = f"127.0.0.1:{self.triton.grpc_port}"
        self.ports: list[int] = []

    def warm_up(self) -> None:
        """Throwaway points: the broker's JIT compiles its hot paths in the first tens of
        seconds under load, which would otherwise be charged to the first system measured.
        Both guarantees: an at-least-once warm-up leaves the transaction coordinator's and
        the transactional log's code cold, and the first exactly-once point then showed
        seconds of 300-700 ms latencies (measured with the reader's per-second trace). And
        a third, exactly-once point: after two, the first measured point still stalled for a
        second or two in most runs (the broker's CPU per event kept falling until the third)."""
        print("warming up the broker (not measured)", flush=True)
        self.point("hand-written loop", "at_least_once", 20_000)
        self.point("hand-written loop", "exactly_once", 20_000)
        self.point("rtflow", "exactly_once", 20_000)

    def close(self) -> None:
        self.triton.close()
        self.broker.close()
        if self.keep_logs is not None:
            self.safepoints.replace(self.keep_logs / "broker-safepoints.log")
        else:
            self.safepoints.unlink(missing_ok=True)

    def _system(
        self, system: str, guarantee: str, suffix: str, workers: int, partitions: int
    ) -> list[subprocess.Popen[bytes]]:
        from rtflow.stages.stream.launcher import free_port, worker_command

        env = {**os.environ, "RTFLOW_BENCH_TOPICS": suffix, "RTFLOW_BENCH_GUARANTEE": guarantee,
               "RTFLOW_BENCH_PARTITIONS": str(partitions), "RTFLOW_LOG_LEVEL": "WARNING"}  # fmt: skip
        brokers = self.broker.bootstrap_servers
        common = ["--brokers", brokers, "--source", f"transactions{suffix}",
                  "--sink", f"decisions{suffix}", "--triton", self.triton_address,
                  "--group", f"fraud{suffix}"]  # fmt: skip
        commands: list[list[str]] = []
        if system.startswith("rtflow"):
            # "rtflow NAME=VALUE" (--variant): the hot path module reads NAME from its env.
            path = PASSTHROUGH if system == "rtflow passthrough" else HOT_PATH
            for name, _, value in (v.partition("=") for v in system.split()[1:]):
                if value:
                    env[name] = value
            self.ports = []
            for index in range(workers):
                port = free_port()
                self.ports.append(port)
                commands.append(
                    worker_command(
                        path,
                        group=0,
                        worker_id=f"bench-{index}",
                        brokers=brokers,
                        triton={"fraud-triton": self.triton_address},
                        metrics_port=port,
                    )
                )
        elif system in ("hand-written loop", "hand-written passthrough"):
            extra = ["--transactions"] if guarantee == "exactly_once" else []
            extra += ["--passthrough"] if system == "hand-written passthrough" else []
            commands.append([sys.executable, HANDWRITTEN, *common, *extra])
        else:
            commands.append([str(QUIX_PYTHON), QUIX, *common])
        # Each process's stderr goes to a file, quoted when it exits before the measurement.
        self.logs = [Path(tempfile.mkstemp(prefix="rtflow-bench-", suffix=".log")[1])
                     for _ in commands]  # fmt: skip
        return [
            subprocess.Popen(
                c,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log.open("wb"),
                preexec_fn=parent_death_signal(),  # none outlives a killed benchmark
            )
            for c, log in zip(commands, self.logs, strict=True)
        ]

    def _wait_ready(self, source: str, sink: str, procs: list[subprocess.Popen[bytes]]) -> None:
        """Send 50 events and wait for their decisions, so that the measured load starts on a
        system that has joined its group and loaded what it needs (no start-up backlog)."""
        from confluent_kafka import Consumer, Producer

        producer = Producer({"bootstrap.servers": self.broker.bootstrap_servers})
        for index in range(50):
            key = f"warmup-{index}.{time.time_ns() // 1000}".encode()
            producer.produce(source, b'{"id":"' + key + b'","amount":12.5,"hour":3}', key=key)
        producer.flush(10)
        consumer = Consumer({"bootstrap.servers": self.broker.bootstrap_servers,
                             "group.id": f"ready-{secrets.token_hex(4)}",
                             "isolation.level": "read_committed",
                             "auto.offset.reset": "earliest"})  # fmt: skip
        consumer.subscribe([sink])
        seen = 0
        deadline = time.monotonic() + 120
        while seen < 50 and time.monotonic() < deadline:
            seen += sum(1 for m in consumer.consume(100, 0.2) if m.error() is None)
            if any(p.poll() is not None for p in procs):
                tails = "\n".join(log.read_text(errors="replace")[-3000:] for log in self.logs)
                raise RuntimeError(f"the system under test exited while starting:\n{tails}")
        consumer.close()
        if seen < 50:
            raise RuntimeError(f"the system under test gave {seen} of 50 warm-up decisions")

    def point(
        self, system: str, guarantee: str, offered: int, partitions: int = 4, workers: int = 1
    ) -> Point:
        suffix = f"-{secrets.token_hex(4)}"
        topics = [f"transactions{suffix}", f"decisions{suffix}", f"dead-letter{suffix}"]
        self.broker.create_topics(*topics, partitions=partitions)
        procs = self._system(system, guarantee, suffix, workers, partitions)
        result = Point(system, guarantee, offered, partitions, workers)
        try:
            self._wait_ready(topics[0], topics[1], procs)
            here = [sys.executable, CHAIN]
            brokers = self.broker.bootstrap_servers
            reader_log = self._kept(system, guarantee, offered, "reader")
            reader = subprocess.Popen(
                [
                    *here,
                    "read",
                    brokers,
                    topics[1],
                    str(self.seconds),
                    str(self.warmup),
                    "1",
                    str(self.reader_min_bytes),
                ],
                stdout=subprocess.PIPE,
                stderr=reader_log.open("wb") if reader_log else None,
                preexec_fn=parent_death_signal(),
            )
            generator = subprocess.Popen(
                [*here, "generate", brokers, topics[0], str(offered), str(self.seconds)]
                + ([] if self.repeated is None else [str(self.repeated)]),
                stdout=subprocess.PIPE,
                preexec_fn=parent_death_signal(),
            )
            time.sleep(self.warmup)
            groups = {
                "broker": [self.broker.pid or 0],
                "Triton": [self.triton.pid or 0],
                "system": [p.pid for p in procs],
                "load + reader": [generator.pid, reader.pid],
            }
            before = {k: cpu_seconds(v) for k, v in groups.items()}
            window_start_ms = time.time() * 1000.0
            measured = self.seconds - self.warmup - 1.0
            time.sleep(measured)
            after = {k: cpu_seconds(v) for k, v in groups.items()}
            stopped = pauses(self.safepoints, window_start_ms, time.time() * 1000.0)
            result.broker_pauses = stopped.describe(measured)
            result.pause_summary = f"{stopped.count} / {stopped.max_ms:.1f}"
            generator.communicate(timeout=60)
            out, _ = reader.communicate(timeout=120)
            if system.startswith("rtflow"):
                result.profile = worker_profile(self.ports)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for index, log in enumerate(self.logs):
                kept = self._kept(system, guarantee, offered, f"system-{index}")
                if kept is None:
                    log.unlink(missing_ok=True)
                else:
                    log.replace(kept)
            self.points_run += 1
        report = json.loads(out)
        latencies = report["latencies"]
        result.achieved = len(latencies) / report["window_seconds"]
        result.drained = report["drained"] / report["window_seconds"]
        result.p50, result.p99, result.p999 = (pct(latencies, q) for q in (0.5, 0.99, 0.999))
        result.duplicates = report["duplicates"]
        result.cpu = {k: (after[k] - before[k]) / measured for k in groups}
        busy = sum(v for k, v in result.cpu.items() if k != "load + reader")
        if result.achieved:
            result.cpu_us_per_event = busy / result.achieved * 1e6
        print(
            f"{system:18} {guarantee:14} P{partitions} W{workers} offered {offered:>6,} "
            f"achieved {result.achieved:>9,.0f}/s drained {result.drained:>9,.0f}/s p50 {result.p50:6.1f} p99 {result.p99:7.1f} "
            f"p99.9 {result.p999:7.1f} ms dup {result.duplicates} cpu "
            + " ".join(f"{k}={v:.2f}" for k, v in result.cpu.items()),
            flush=True,
        )
        if result.profile:
            print("   " + "  ".join(f"{k}={v:.2f}" for k, v in sorted(result.profile.items())))
        print(f"   {result.broker_pauses}", flush=True)
        if report.get("stalls"):
            # Second of sending (from the reader's start, and its wall-clock time, UTC, to
            # find it in the kept logs) -> worst latency in ms.
            started = report["started_us"] / 1e6
            stalls = ", ".join(
                f"s{s} ({time.strftime('%H:%M:%S', time.gmtime(started + int(s)))}): {ms} ms"
                for s, ms in report["stalls"].items()
            )
            print(f"   stalls over {report['stall_ms']:g} ms: {stalls}", flush=True)
        return result

    def _kept(self, system: str, guarantee: str, offered: int, role: str) -> Path | None:
        """Where a process's log of this point is kept (``--keep-logs``), or None."""
        if self.keep_logs is None:
            return None
        name = f"{self.points_run:02d}-{system.replace(' ', '-')}-{guarantee}-{offered}-{role}.log"
        return self.keep_logs / name


def plan(quick: bool) -> list[tuple[str, str, int, int, int]]:
    eos, alo = "exactly_once", "at_least_once"
    points = [
        ("rtflow", eos, 5_000, 4, 1),
        ("rtflow", eos, 20_000, 4, 1),
        ("hand-written loop", eos, 20_000, 4, 1),
        *((floor, eos, 20_000, 4, 1) for floor in FLOOR),
        ("quix streams", eos, 500, 4, 1),
        ("rtflow", alo, 20_000, 4, 1),
        ("hand-written loop", alo, 20_000, 4, 1),
    ]
    if quick:
        return points
    return [
        *points,
        ("rtflow", eos, 30_000, 4, 1),
        ("rtflow", eos, 40_000, 4, 1),
        ("rtflow", alo, 60_000, 4, 1),
        ("hand-written loop", alo, 60_000, 4, 1),
        ("quix streams", eos, 5_000, 4, 1),  # far above what it takes: its output rate
        # Scaling: partitions = workers, offered far above what they can take.
        ("rtflow", eos, 80_000, 1, 1),
        ("rtflow", eos, 80_000, 2, 2),
        ("rtflow", eos, 80_000, 4, 4),
    ]


BROKER_GC = {"zgc": ["-XX:+UseZGC"], "g1": []}  # g1: Kafka's production flags as they are


def section(
    points: list[Point], seconds: float, warmup: float, command: str, collector: str = "zgc"
) -> str:
    lines = [
        HEADING,
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on this machine ({os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}), "
        "everything on 127.0.0.1: Kafka broker (Kafka's production JVM flags, collector "
        f"{collector.upper()}), Triton CPU with the "
        "example's Python-backend scorer, load generator, reader and the system under test "
        f"share the two cores. {seconds:g} s per point, the first {warmup:g} s not counted. "
        f"Command: `{command}`.",
        "",
        "Latency is from the generator's send to the decision being visible to a "
        "`read_committed` consumer. CPU is in cores over the measured window, per process "
        "tree; µs/event counts broker + Triton + system. Broker pauses: the broker JVM's "
        "stop-the-world pauses (safepoints) in the window, count / longest ms.",
        "",
        "| system | guarantee | partitions / workers | offered ev/s | achieved ev/s | output ev/s "
        "| p50 ms | p99 ms | p99.9 ms | dup | CPU broker / Triton / system / load "
        "| µs CPU per event | broker pauses |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for p in points:
        cpu = " / ".join(f"{p.cpu.get(k, 0):.2f}" for k in ("broker", "Triton", "system",
                                                           "load + reader"))  # fmt: skip
        lines.append(
            f"| {p.system} | {p.guarantee.replace('_', '-')} | {p.partitions} / {p.workers} "
            f"| {p.offered:,} | {p.achieved:,.0f} | {p.drained:,.0f} | {p.p50:.1f} | {p.p99:.1f} | {p.p999:.1f} "
            f"| {p.duplicates} | {cpu} | {p.cpu_us_per_event:,.0f} | {p.pause_summary} |"
        )
    return "\n".join(lines) + "\n"


def repeat_section(
    points: list[Point],
    seconds: float,
    warmup: float,
    command: str,
    heading: str = REPEAT_HEADING,
) -> str:
    """The headline point run several times, interleaved: one run's p99 on two shared cores
    moves by a factor of ten (a single broker stall of half a second is 1% of a window)."""
    import statistics

    lines = [
        heading,
        "",
        f"Measured {time.strftime('%Y-%m-%d')}, same machine and set-up as above, {seconds:g} s "
        f"per run, the first {warmup:g} s not counted, the systems' runs interleaved. "
        f"Command: `{command}`.",
        "",
        "| system | runs | p50 ms per run | p99 ms per run | median p50 ms | median p99 ms "
        "| best p99 ms |",
        "|---|---:|---|---|---:|---:|---:|",
    ]
    for system in sorted({p.system for p in points}, key=lambda s: (not s.startswith("rtflow"), s)):
        mine = [p for p in points if p.system == system]
        p50s = [p.p50 for p in mine]
        p99s = [p.p99 for p in mine]
        lines.append(
            f"| {system} | {len(mine)} | {', '.join(f'{x:.1f}' for x in p50s)} "
            f"| {', '.join(f'{x:.1f}' for x in p99s)} | {statistics.median(p50s):.1f} "
            f"| {statistics.median(p99s):.1f} | {min(p99s):.1f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--quick", action="store_true", help="the 20,000 events/s points only")
    parser.add_argument("--only", help="run only the points of this system")
    parser.add_argument("--write", action="store_true", help="rewrite BENCHMARKS.md's section")
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="only the exactly-once 20,000 events/s points of rtflow and the hand-written "
        "loop, this many times each, interleaved (their own section)",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="with --repeat: also run rtflow with this environment variable for the hot path "
        "(RTFLOW_BENCH_INTERVAL=1, say), interleaved with the others, as its own row",
    )
    parser.add_argument(
        "--reader-min-bytes",
        type=int,
        default=65536,
        help="the reader's fetch.min.bytes (its fetch.wait.max.ms is 5): 1 sees each commit "
        "as soon as the broker has it, 65536 (default) waits up to 5 ms more",
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="with --repeat: also the passthrough systems (no stage, no Triton), interleaved",
    )
    parser.add_argument(
        "--broker-gc",
        choices=sorted(BROKER_GC),
        default="zgc",
        help="the broker's collector: zgc (default; sub-millisecond pauses) or g1 (Kafka's "
        "own flags, as kafka-run-class.sh has them)",
    )
    parser.add_argument(
        "--broker-jvm",
        action="append",
        default=[],
        metavar="OPTION",
        help="one more JVM option for the broker (after Kafka's production flags; a collector "
        "such as -XX:+UseZGC replaces G1's): the whole run's broker, so its own run",
    )
    parser.add_argument(
        "--keep-logs",
        type=Path,
        metavar="DIR",
        help="keep every process's log (stderr) of every point in DIR, named by point: to "
        "match a stall's second with, say, librdkafka's debug lines",
    )
    parser.add_argument(
        "--repeated",
        type=float,
        metavar="FRACTION",
        help="this share (0 to 1) of events repeats one of 1,000 transactions, the rest are "
        "each seen once: for a model with a cache (client_cache, response_cache)",
    )
    options = parser.parse_args(args)
    if options.keep_logs:
        options.keep_logs.mkdir(parents=True, exist_ok=True)
    # SIGTERM (a timeout, a kill) unwinds like Ctrl-C, so the broker, Triton and the workers
    # are stopped by the `finally` below rather than left running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    bench = Bench(
        options.seconds,
        options.warmup,
        options.keep_logs,
        options.reader_min_bytes,
        [*BROKER_GC[options.broker_gc], *options.broker_jvm],
        options.repeated,
    )
    points: list[Point] = []
    eos = "exactly_once"
    chosen = (
        [(s, eos, 20_000, 4, 1) for _ in range(options.repeat)
         for s in ("rtflow", *(f"rtflow {v}" for v in options.variant), "hand-written loop",
                   *(FLOOR if options.floor else ()))]
        if options.repeat
        else plan(options.quick)
    )  # fmt: skip
    try:
        bench.warm_up()
        for system, guarantee, offered, partitions, workers in chosen:
            if options.only and system != options.only:
                continue
            if system == "quix streams" and not QUIX_PYTHON.exists():
                print("quix streams: .tools/quix-venv is missing (see README)", file=sys.stderr)
                continue
            points.append(bench.point(system, guarantee, offered, partitions, workers))
    finally:
        bench.close()
    reader = (
        f" --reader-min-bytes {options.reader_min_bytes}"
        if options.reader_min_bytes != 65536
        else ""
    )
    reader += f" --broker-gc {options.broker_gc}" if options.broker_gc != "zgc" else ""
    reader += "".join(f" --broker-jvm={o}" for o in options.broker_jvm)
    if options.write and options.repeat:
        from bench_report import replace_section

        command = f"python benchmarks/stream_fraud.py --repeat {options.repeat} --write" + "".join(
            f" --variant {v}" for v in options.variant
        )
        command += " --floor" if options.floor else ""
        command += reader
        # Runs with repeated requests (a cache's measurement) have a section of their own.
        heading = REPEAT_HEADING
        if options.repeated is not None:
            command += f" --repeated {options.repeated:g}"
            heading = CACHE_HEADING
        replace_section(
            heading, repeat_section(points, options.seconds, options.warmup, command, heading)
        )
    elif options.write:
        from bench_report import replace_section

        command = "python benchmarks/stream_fraud.py --write" + (
            " --quick" if options.quick else ""
        )
        command += reader
        replace_section(
            HEADING,
            section(points, options.seconds, options.warmup, command, options.broker_gc),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
