"""``rtflow run --local``: run a pipeline's IR on one machine, with Argo's semantics.

Events come from a JSONL file, stdin or a Kafka topic; each becomes one run of the pipeline (a
"workflow"), many in flight at once. Function stages run in long-lived worker processes
(:mod:`rtflow.stages.workers`) through the same runtime code as the stage containers; what Argo
would decide (``depends``, ``when``, ``withParam`` aggregation, retries and backoff, deadlines,
the exit handler) follows :mod:`rtflow.stages.semantics`. Results go to stdout or a topic; an
event that does not fit the pipeline's inputs, or whose run failed for good, goes to the
dead-letter output with the reason, and the run goes on.

Inference stages run for real: the compiled KServe v2 request goes to a Triton, either one given
by URL (``triton="http://host:8000"``) or, by default, one this run starts from the models the
pipeline calls and stops at the end (:mod:`rtflow.stages.inference`); gRPC inference stages get
that server's gRPC address.

Container stages cannot run without Docker: the run refuses up front, naming the stage, unless a
Python stand-in is given for it (``stand_ins={"stage-name": callable}``; any stage may have
one). A stand-in is called in this process with the decoded inputs as keyword arguments and
returns the value of a stage's single output, or for several outputs a mapping (or NamedTuple)
of output name to value; raising :class:`BadInput` marks a bad input. Its deadline is checked
after it returns (a thread cannot be killed).

Nothing that goes wrong with one event stops the run (:mod:`rtflow.stages.event_routing`,
:mod:`rtflow.stages.dead_letters`); a bad input is never retried, a failure that may pass is
retried as the stage's policy says. Offsets are committed once the broker confirms them
(:mod:`rtflow.stages.offsets`). SIGTERM and Ctrl-C drain and commit (:mod:`rtflow.stages.shutdown`)
and no child outlives the run, even one killed with SIGKILL (:mod:`rtflow.stages.reaper`).

The run is split by concept: this module reads the events and drives them
(:func:`run_local`); :mod:`rtflow.stages.local_executor` starts and stops what runs the stages;
:mod:`rtflow.stages.local_workflow` runs one event as Argo runs a Workflow;
:mod:`rtflow.stages.local_results` holds what a run produced. Their public names stay
importable from here.
"""

from __future__ import annotations

import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rtflow import ir
from rtflow.stages import reaper
from rtflow.stages.approvals import (
    ApprovalRequest,
    Approver,
    auto_approve,
    auto_reject,
    terminal_approver,
)
from rtflow.stages.event_routing import EventRouter
from rtflow.stages.events import Event, Sink
from rtflow.stages.local_executor import LocalExecutor, LocalRunError, stage_environment
from rtflow.stages.local_results import EventResult
from rtflow.stages.progress import RunProgress
from rtflow.stages.run_report import RunSummary, StageTiming, Timings, percentile
from rtflow.stages.runtime import BadInput
from rtflow.stages.shutdown import Shutdown
from rtflow.stages.stand_ins import StandIn

__all__ = [
    "ApprovalRequest",
    "BadInput",
    "EventResult",
    "LocalExecutor",
    "LocalRunError",
    "RunSummary",
    "StageTiming",
    "Timings",
    "auto_approve",
    "auto_reject",
    "main",
    "percentile",
    "run_local",
    "stage_environment",
    "terminal_approver",
]

if TYPE_CHECKING:
    from rtflow.gpu.triton_server import TritonServer


def run_local(
    pipeline: ir.Pipeline,
    events: Iterable[Event],
    *,
    output: Sink,
    dead_letter: Sink,
    workers: int = 1,
    max_in_flight: int = 16,
    stand_ins: Mapping[str, StandIn] | None = None,
    approver: Approver | None = None,
    progress: bool = False,
    log_dir: Path | None = None,
    sleep: Callable[[float], None] = time.sleep,
    triton: str | TritonServer | None = None,
    triton_grpc: str | None = None,
    shutdown: Shutdown | None = None,
    stage_env: Mapping[str, Mapping[str, str | None]] | None = None,
) -> RunSummary:
    """Run every event through ``pipeline``; results to ``output``, the rest to ``dead_letter``.

    Raises :class:`LocalRunError` before reading any event if the pipeline cannot run here.
    ``events`` may have ``total`` (for the progress bar), ``before_commit`` (called with the
    sinks' flush before offsets are committed), ``stop()`` (read no more) and ``close()``
    (commit what is done). ``triton``: the Triton inference stages call (its HTTP base URL, or
    a :class:`TritonServer`, started if it is not running and left running); None starts one
    from the pipeline's servers and stops it at the end. ``triton_grpc``: the gRPC
    ``host:port`` for gRPC inference stages (default: the server's, or port 8001 of the URL's
    host). ``shutdown``: a :class:`Shutdown` whose request (SIGTERM, Ctrl-C) stops the run
    gracefully (see :mod:`rtflow.stages.shutdown`); a KeyboardInterrupt does the same.
    ``stage_env``: per stage, environment variables over its own ``env=`` (None: this
    process's value, see :func:`stage_environment`).

    Every child the run starts is also reported to a reaper (:mod:`rtflow.stages.reaper`) that
    stops it should this process die without cleaning up.
    """
    summary = RunSummary()
    stop = shutdown or Shutdown()
    executor = LocalExecutor(
        pipeline,
        workers=workers,
        stand_ins=stand_ins,
        approver=approver,
        max_in_flight=max_in_flight,
        log_dir=log_dir,
        sleep=sleep,
        triton=triton,
        triton_grpc=triton_grpc,
        stage_env=stage_env,
    )
    router = EventRouter(pipeline, executor, output, dead_letter, summary)
    if hasattr(events, "before_commit"):
        events.before_commit = router.flush  # a Kafka source commits only what is written
    if hasattr(events, "window") and getattr(events, "window", None) is None:
        events.window = 2 * max_in_flight  # what a crash may redo: running and queued
    work: queue.Queue[Event | None] = queue.Queue(maxsize=max_in_flight)
    crashed: list[BaseException] = []

    tick: Callable[[], None] = getattr(events, "tick", lambda: None)  # commits, same thread

    def feed() -> None:
        try:
            for event in events:
                while not stop.requested.is_set():
                    try:
                        work.put(event, timeout=0.02)
                        break
                    except queue.Full:
                        tick()
                if stop.requested.is_set() or crashed:
                    return
        except BaseException as exc:  # the source failed (a fatal consumer error): say why
            crashed.append(exc)

    def drive() -> None:
        while (event := work.get()) is not None:
            if stop.requested.is_set() or crashed:
                continue  # not started: not acknowledged, so a restart reads it again
            try:
                router.handle(event)
            except BaseException as exc:  # a sink that fails: stop the run, say why
                crashed.append(exc)

    total = getattr(events, "total", None)
    with reaper.active():
        executor.start()
        summary.triton = executor.target.describe() if executor.target is not None else None
        started = time.monotonic()  # events/s and elapsed count from the first event on
        drivers = [
            threading.Thread(target=drive, name=f"rtflow-event-{i}", daemon=True)
            for i in range(max_in_flight)
        ]
        for d in drivers:
            d.start()
        feeder = threading.Thread(target=feed, name="rtflow-feed", daemon=True)
        ticker = RunProgress(summary, router.lock, total).start() if progress else None
        aborted = False
        try:
            try:
                feeder.start()
                while feeder.is_alive() and not stop.requested.is_set() and not crashed:
                    feeder.join(0.2)
            except KeyboardInterrupt:
                stop.request(signal.SIGINT)
            source_stop = getattr(events, "stop", None)
            if source_stop is not None:
                source_stop()
            feeder.join(1.0)  # a source blocked on stdin may never return: it is a daemon
            try:
                for _ in drivers:
                    work.put(None)
                for d in drivers:
                    d.join()  # the events in flight finish (a second signal stops waiting)
            except KeyboardInterrupt:
                aborted = True
                router.abandoned.set()
                executor.abort()
        finally:
            summary.elapsed_s = time.monotonic() - started
            if ticker is not None:
                ticker.stop()
            try:
                if not crashed:
                    router.flush()
                close = getattr(events, "close", None)
                if close is not None and not (feeder.is_alive() and aborted):
                    close()  # commits what is done
            finally:
                executor.close()
        summary.log_dir = str(executor.log_dir) if executor.log_dir is not None else None
        summary.stages = executor.timings.table()
    summary.interrupted = stop.requested.is_set()
    summary.abandoned = router.abandoned.is_set()
    summary.signal_exit = stop.exit_code
    summary.latency_p50_ms = percentile(router.latencies, 50)
    summary.latency_p99_ms = percentile(router.latencies, 99)
    if router.first_tokens:
        summary.generations = len(router.first_tokens)
        summary.ttft_p50_ms = percentile(router.first_tokens, 50)
        summary.ttft_p99_ms = percentile(router.first_tokens, 99)
    if crashed:
        raise crashed[0]
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``rtflow run --local ARGS...`` (kept for callers of this module's first version)."""
    from rtflow.cli import main as cli_main

    return cli_main(["run", "--local", *(argv or sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())
