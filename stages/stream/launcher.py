"""Starting stream workers: one in a container (``python -m rtflow.stages stream``), or a whole
local stream plane for ``rtflow run --local`` (the real broker, the real Triton, N workers).

The local run starts the *same* worker command a stream Deployment runs, as child processes;
only the addresses differ (loopback broker and Triton instead of the cluster's Services).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from rtflow import ir
from rtflow.stream_layout import stream_topics

log = logging.getLogger("rtflow.stream")
MAX_RESTARTS = 3


class StreamRunError(RuntimeError):
    """The local stream plane cannot go on (a worker keeps failing)."""


def load_stream_pipeline(target: str) -> ir.Pipeline:
    from rtflow.loader import load_pipelines

    _, pipelines = load_pipelines(target)
    streams = [p for p in (d.build() for d in pipelines) if p.stream is not None]
    if len(streams) != 1:
        names = ", ".join(p.name for p in streams) or "none"
        raise SystemExit(
            f"rtflow: error: {target} must define one stream pipeline (found: {names}); "
            "name it as PATH:ATTR"
        )
    return streams[0]


def parse_pairs(pairs: Sequence[str], what: str) -> dict[str, str]:
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"rtflow: error: {what} {pair!r} is not NAME=VALUE")
        result[name] = value
    return result


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipeline", metavar="PATH_OR_MODULE[:PIPELINE]")
    parser.add_argument("--group", type=int, default=0, help="which fused group (after hops)")
    parser.add_argument(
        "--worker-id",
        default=os.environ.get("RTFLOW_WORKER_ID") or os.environ.get("HOSTNAME"),
        help="stable id of this worker (its transactional id); default $RTFLOW_WORKER_ID, "
        "$HOSTNAME",
    )
    parser.add_argument("--brokers", default=os.environ.get("KAFKA_BROKERS"))
    parser.add_argument(
        "--triton",
        action="append",
        default=[],
        metavar="SERVER=HOST:PORT",
        help="gRPC address of a Triton server (default: the server's Service)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="Prometheus port (default: the plane's)"
    )
    parser.add_argument("--metrics-address", default=os.environ.get("RTFLOW_METRICS_ADDRESS"))
    parser.add_argument(
        "--unreadable-offsets-after",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="check the committed offsets of a partition still without a position after this "
        "long, and report them if the group cannot read them (default: 30)",
    )


def serve(args: argparse.Namespace) -> int:
    """The worker process: build the plan from the pipeline's own definition and run it."""
    from rtflow.stages import secret_files
    from rtflow.stages.builtin.kafka_publish import security_from_env
    from rtflow.stages.stage_logging import configure as configure_logging
    from rtflow.stages.stream.answer_cache import observe_caches
    from rtflow.stages.stream.generate_step import observe_first_tokens
    from rtflow.stages.stream.plan import Plan
    from rtflow.stages.stream.settings import EXIT_FATAL, WorkerSettings
    from rtflow.stages.stream.worker import StreamWorker

    # SIGTERM can come while the pipeline still loads (a scale-down right after a scale-up):
    # it is a clean stop before anything was consumed, not a death by signal.
    worker: StreamWorker | None = None
    stop_requested = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stop_requested
        stop_requested = True
        if worker is not None:
            worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # One log format for both planes (rtflow.stages.stage_logging): JSON lines with the level,
    # the logger, the message as "event" and, for failures, the traceback.
    configure_logging()
    # The hot path's stage credentials are mounted as files (<ENV>_FILE); a stage function
    # reads os.environ["<ENV>"] on the stream plane as on the workflow plane, so they are
    # loaded before the pipeline's modules are imported (rtflow.stages.secret_files).
    secret_files.load()
    pipeline = load_stream_pipeline(args.pipeline)
    assert pipeline.stream is not None
    plan = Plan(pipeline, group=args.group)
    brokers = args.brokers or ",".join(pipeline.stream.brokers)
    plan.bind_triton(parse_pairs(args.triton, "--triton"))
    settings = WorkerSettings(
        brokers=brokers,
        worker_id=args.worker_id or "0",
        client_config=security_from_env(),
        metrics_port=args.metrics_port
        if args.metrics_port is not None
        else pipeline.stream.metrics_port,
        metrics_address=args.metrics_address or "0.0.0.0",
        unreadable_offsets_after_seconds=args.unreadable_offsets_after,
    )
    worker = StreamWorker(plan, settings)
    observe_first_tokens(plan.steps, worker.metrics.first_token)  # rtflow.generate steps
    observe_caches(plan.steps, worker.metrics.answer_cache)  # models with a client_cache
    if stop_requested:
        return 0
    code = worker.run()
    if code == EXIT_FATAL:
        logging.shutdown()
        os._exit(code)  # a stuck librdkafka call must not keep the process alive
    return code


# -- the local stream plane ------------------------------------------------------------------------


@dataclass
class WorkerProcess:
    """One worker child process: its command, its metrics port and its log."""

    group: int
    index: int
    command: list[str]
    metrics_port: int
    log_path: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    def start(self) -> WorkerProcess:
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,  # a terminal's Ctrl-C reaches the launcher, which stops us
            )
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def wait(self, timeout: float) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None


def worker_command(
    target: str,
    *,
    group: int,
    worker_id: str,
    brokers: str,
    triton: Mapping[str, str],
    metrics_port: int,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "rtflow.stages",
        "stream",
        target,
        "--group",
        str(group),
        "--worker-id",
        worker_id,
        "--brokers",
        brokers,
        "--metrics-port",
        str(metrics_port),
        "--metrics-address",
        "127.0.0.1",
    ]
    for server, address in sorted(triton.items()):
        command += ["--triton", f"{server}={address}"]
    return command


def scrape(port: int, timeout: float = 1.0) -> dict[str, float]:
    """A worker's metrics as ``name{labels}`` -> value (the text format, parsed by the
    Prometheus client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as reply:
        text = reply.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


@dataclass
class Totals:
    """What every worker has done so far, from their metrics."""

    processed: float = 0.0
    filtered: float = 0.0
    dead_lettered: float = 0.0
    handed_off: float = 0.0
    latency_buckets: dict[float, float] = field(default_factory=dict)
    first_token_buckets: dict[float, float] = field(default_factory=dict)
    """Time to first token of the rtflow.generate steps (every stage and worker together)."""

    @property
    def done(self) -> float:
        return self.processed + self.filtered + self.dead_lettered

    def bound(self, quantile_ms: float) -> str:
        """``<=N ms``, or ``>N ms`` past the histogram's last finite bucket."""
        if quantile_ms != float("inf"):
            return f"<={quantile_ms:.0f} ms"
        finite = [b for b in self.latency_buckets if b != float("inf")]
        return f">{max(finite, default=0.0) * 1000.0:.0f} ms"

    def quantile(self, q: float, buckets: dict[float, float] | None = None) -> float | None:
        """The latency quantile in ms (or of ``buckets``), read off the histogram's buckets
        (upper bound)."""
        buckets = self.latency_buckets if buckets is None else buckets
        if not buckets:
            return None
        total = max(buckets.values())
        if total <= 0:
            return None
        for bound in sorted(buckets):
            if buckets[bound] >= q * total:
                return bound * 1000.0
        return None


def totals(ports: Sequence[int], *, last_group_ports: Sequence[int]) -> Totals:
    result = Totals()
    for port in ports:
        try:
            values = scrape(port)
        except OSError:
            continue
        last = port in last_group_ports
        for key, value in values.items():
            if key.startswith("rtflow_stream_events_total{"):
                outcome = key.split("outcome=", 1)[1].split(",")[0].rstrip("}")
                # An event ends in the last group, or is filtered / dead-lettered on the way.
                counted = ("filtered", "dead_lettered") + (
                    ("processed", "handed_off") if last else ()
                )
                if outcome in counted:
                    setattr(result, outcome, getattr(result, outcome) + value)
            elif key.startswith("rtflow_stream_event_latency_seconds_bucket{") and last:
                bound = key.split("le=", 1)[1].split(",")[0].rstrip("}")
                upper = float("inf") if bound in ("+Inf", "inf") else float(bound)
                result.latency_buckets[upper] = result.latency_buckets.get(upper, 0.0) + value
            elif key.startswith("rtflow_stream_time_to_first_token_seconds_bucket{"):
                bound = key.split("le=", 1)[1].split(",")[0].rstrip("}")
                upper = float("inf") if bound in ("+Inf", "inf") else float(bound)
                found = result.first_token_buckets
                found[upper] = found.get(upper, 0.0) + value
    return result


class Progress:
    """One status line: rewritten in place on a terminal, a new line every few seconds
    otherwise (a log file or CI gets a readable record, not a stream of carriage returns)."""

    def __init__(self, stream: IO[str], *, every: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = every if not self.tty else 0.5
        self._last = 0.0
        self._previous: tuple[float, float] | None = None

    def update(self, fed: int, seen: Totals, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.every:
            return
        rate = 0.0
        if self._previous is not None and now > self._previous[0]:
            rate = (seen.done - self._previous[1]) / (now - self._previous[0])
        self._previous = (now, seen.done)
        self._last = now
        p50, p99 = seen.quantile(0.5), seen.quantile(0.99)
        latency = f"p50{seen.bound(p50)} p99{seen.bound(p99)}" if p50 and p99 else "latency -"
        line = (
            f"stream: fed {fed}  processed {seen.processed:.0f}  filtered {seen.filtered:.0f}  "
            f"dead-lettered {seen.dead_lettered:.0f}  handed off {seen.handed_off:.0f}  "
            f"{rate:,.0f} events/s  {latency}"
        )
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Feeder:
    """Feeds the events file (or stdin) to the source topic on a thread of its own, so that a
    stop (Ctrl-C, SIGTERM) is seen while stdin is still open."""

    def __init__(self, brokers: str, topic: str, events: str | None) -> None:
        self.count = 0
        self.finished = False  # without events the run lasts --duration or until stopped
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None
        if events is not None:
            self._thread = threading.Thread(
                target=self._feed, args=(brokers, topic, events), daemon=True
            )
            self._thread.start()

    def _feed(self, brokers: str, topic: str, events: str) -> None:
        try:
            source = sys.stdin if events == "-" else open(events, encoding="utf-8")  # noqa: SIM115
            with source:
                produce_events(brokers, topic, iter(source), progress=self)
        except BaseException as exc:  # reported by the run, not lost in a thread
            self.error = exc
        finally:
            self.finished = True


def produce_events(
    brokers: str, topic: str, lines: Iterator[str], *, progress: Feeder | None = None
) -> int:
    """Feed JSONL events to the source topic (each line as it is: a line that is not JSON is a
    poison event the workers must dead-letter, not something to drop here)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": brokers, "enable.idempotence": True, "linger.ms": 5})
    count = 0
    for line in lines:
        text = line.rstrip("\n")
        if not text.strip():
            continue
        while True:
            try:
                producer.produce(topic, value=text.encode())
                break
            except BufferError:
                producer.poll(0.01)
        count += 1
        if progress is not None:
            progress.count = count
        producer.poll(0)
    producer.flush(30)
    return count


@contextlib.contextmanager
def _local_broker(brokers: str | None) -> Iterator[tuple[str, Any]]:
    if brokers:
        yield brokers, None
        return
    from rtflow.testing.kafka_broker import KafkaBroker

    with KafkaBroker() as broker:
        yield broker.bootstrap_servers, broker


def run_stream_local(
    target: str,
    pipeline: ir.Pipeline,
    *,
    events: str | None,
    brokers: str | None,
    triton_grpc: str | None,
    workers: int | None,
    duration: float | None,
    progress: bool,
    log_dir: Path | None,
) -> int:
    """``rtflow run --local`` for a stream pipeline: broker, Triton, workers, events, a live
    progress line; every child stopped at the end (SIGTERM, then SIGKILL)."""
    from rtflow.stages.inference import needs_triton

    stream = pipeline.stream
    assert stream is not None
    from rtflow.stream_layout import groups_of

    count = workers or stream.workers
    folder = log_dir or Path(tempfile.mkdtemp(prefix=f"rtflow-stream-{pipeline.name}-"))
    folder.mkdir(parents=True, exist_ok=True)
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    # Ctrl-C and SIGTERM alike stop the run gracefully: the workers get SIGTERM, finish their
    # batch and commit; only a worker that does not end in time is killed.
    previous = signal.signal(signal.SIGTERM, on_signal)
    previous_int = signal.signal(signal.SIGINT, on_signal)
    out = sys.stderr
    children: list[WorkerProcess] = []
    triton_target = None
    try:
        with _local_broker(brokers) as (bootstrap, broker):
            if broker is not None:
                broker.create_topics(*stream_topics(pipeline), partitions=stream.partitions)
            triton: dict[str, str] = {}
            stages = [s for s in needs_triton(pipeline) if any(
                pipeline.task(t).stage == s.name for t in stream.hot_tasks
            )]  # fmt: skip
            if stages and triton_grpc:
                triton = {s.inference.server: triton_grpc for s in stages if s.inference}
            elif stages:
                from rtflow.stages.inference import local_triton_server

                triton_target = local_triton_server(pipeline, stages, work_dir=folder / "triton")
                triton_target.start()
                address = f"127.0.0.1:{triton_target.grpc_port}"
                triton = {s.inference.server: address for s in stages if s.inference}
                print(f"stream: Triton at {address}", file=out)
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            for group in range(len(groups_of(stream))):
                for index in range(count):
                    port = free_port()
                    children.append(
                        WorkerProcess(
                            group,
                            index,
                            worker_command(
                                target,
                                group=group,
                                worker_id=f"local-{group}-{index}",
                                brokers=bootstrap,
                                triton=triton,
                                metrics_port=port,
                            ),
                            port,
                            folder / f"worker-{group}-{index}.log",
                            env,
                        ).start()
                    )
            print(
                f"stream: {len(children)} workers on {stream.source_topic} "
                f"({stream.guarantee}, transactions every {stream.transaction_interval_ms} ms), "
                f"logs in {folder}",
                file=out,
            )
            feeder = Feeder(bootstrap, stream.source_topic, events)
            ports = [c.metrics_port for c in children]
            last = max(c.group for c in children)
            last_ports = [c.metrics_port for c in children if c.group == last]
            bar = Progress(out) if progress else Progress(out, every=5.0)
            started = time.monotonic()
            seen = Totals()
            fed = 0
            while not stopping.is_set():
                time.sleep(0.25)
                seen = totals(ports, last_group_ports=last_ports)
                fed = feeder.count
                bar.update(fed, seen)
                for child in children:
                    if not child.alive and child.process is not None:
                        code = child.process.returncode
                        if child.restarts >= MAX_RESTARTS:
                            tail = child.log_path.read_text(errors="replace")[-3000:]
                            print(tail, file=out)
                            raise StreamRunError(
                                f"worker {child.group}-{child.index} exited {code} "
                                f"{child.restarts + 1} times; its log is above"
                            )
                        print(f"stream: worker {child.group}-{child.index} exited {code}; "
                              "restarting it", file=out)  # fmt: skip
                        child.restarts += 1
                        child.start()
                if feeder.error is not None:
                    raise StreamRunError(f"feeding {events}: {feeder.error}")
                if feeder.finished and duration is None and seen.done >= fed:
                    break
                if duration is not None and time.monotonic() - started >= duration:
                    break
            fed = feeder.count
            bar.update(fed, seen, force=True)
            bar.close()
            for child in children:
                child.terminate()
            codes = [child.wait(30.0) for child in children]
            summary = {
                "fed": fed,
                # Counters are floats in Prometheus' text format; events are whole.
                "processed": int(seen.processed),
                "filtered": int(seen.filtered),
                "dead_lettered": int(seen.dead_lettered),
                "handed_off": int(seen.handed_off),
                "worker_exit_codes": codes,
                "seconds": round(time.monotonic() - started, 2),
            }
            generations = max(seen.first_token_buckets.values(), default=0.0)
            if generations:  # the histogram's bucket bounds: "at most" figures
                p50, p99 = (seen.quantile(q, seen.first_token_buckets) or 0.0 for q in (0.5, 0.99))
                summary |= {"generations": int(generations),
                            "ttft_p50_le_ms": p50, "ttft_p99_le_ms": p99}  # fmt: skip
                print(f"stream: time to first token ({int(generations)} generations): "
                      f"p50<={p50:.0f} ms, p99<={p99:.0f} ms", file=out)  # fmt: skip
            print(json.dumps(summary), file=out)
            return 0 if all(code == 0 for code in codes) else 1
    finally:
        for child in children:
            child.kill()
        if triton_target is not None:
            triton_target.close()
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)
