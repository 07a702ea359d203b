"""``rtflow run --local``: wire the parsed options to the local run (sources, sinks, stand-ins,
approvals) and print its summary. The run itself is :mod:`rtflow.stages.local` (workflow plane)
or :mod:`rtflow.stages.stream.launcher` (stream plane)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from rtflow import ir
from rtflow.errors import RtflowError
from rtflow.stages import reaper
from rtflow.stages.approvals import Approver, auto_approve, auto_reject, terminal_approver
from rtflow.stages.events import JsonlSink, JsonlSource, Sink
from rtflow.stages.local import run_local
from rtflow.stages.local_executor import LocalRunError
from rtflow.stages.shutdown import Shutdown, StopNow
from rtflow.stages.stand_ins import StandIn, StandInError, from_module, from_spec
from rtflow.stages.stream.launcher import StreamRunError

__all__ = ["EXTRAS", "cmd_run", "parse_stage_env"]

# What a local run may import only when it needs it, and the extra that installs it.
EXTRAS = {
    "confluent_kafka": "stream",
    "prometheus_client": "stream",
    "tritonclient": "triton",
    "pytriton": "triton",
    "numpy": "triton",
}


def parse_stage_env(specs: list[str]) -> dict[str, dict[str, str | None]]:
    """``STAGE:NAME=VALUE`` (repeatable) -> {stage: {name: value}}; ``STAGE:NAME`` without a
    value -> None: this process's value, or none (see :func:`stage_environment`)."""
    found: dict[str, dict[str, str | None]] = {}
    for spec in specs:
        stage, colon, assignment = spec.partition(":")
        name, equals, value = assignment.partition("=")
        if not colon or not stage or not name:
            raise LocalRunError(f"--stage-env {spec!r} is not STAGE:NAME=VALUE or STAGE:NAME")
        found.setdefault(stage, {})[name] = value if equals else None
    return found


def _select_pipeline(target: str) -> ir.Pipeline:
    from rtflow.loader import load_pipelines

    _, pipelines = load_pipelines(target)
    if len(pipelines) > 1:
        names = ", ".join(p.name for p in pipelines)
        raise LocalRunError(f"{target} defines several pipelines ({names}); name one as PATH:ATTR")
    return pipelines[0].build()


def cmd_run(args: argparse.Namespace) -> int:
    """0 when every event succeeded, 1 when one failed, 2 when the run cannot start (one line),
    130 after Ctrl-C (the events in flight drained), 0 after SIGTERM."""
    with Shutdown() as shutdown:  # first: a SIGTERM while loading must not kill it half-way
        try:
            return _run(args, shutdown)
        except (LocalRunError, StreamRunError, StandInError, OSError) as exc:
            raise RtflowError(str(exc)) from exc
        except ModuleNotFoundError as exc:
            extra = EXTRAS.get((exc.name or "").partition(".")[0])
            if extra is None:
                raise
            raise RtflowError(
                f"this run needs {exc.name}, which is not installed: pip install 'rtflow[{extra}]'"
            ) from exc
        except StopNow:
            # A second signal where the run could not drain (loading, starting, closing): the
            # exit code is still the signal's (0 SIGTERM, 130 Ctrl-C).
            print(
                "rtflow: stopped at once: what was in flight was neither written nor "
                "acknowledged (a restart runs it again)",
                file=sys.stderr,
            )
            return shutdown.exit_code if shutdown.exit_code is not None else 130


def _run(args: argparse.Namespace, shutdown: Shutdown) -> int:
    pipeline = _select_pipeline(args.pipeline)
    if shutdown.exit_code is not None:  # stopped while loading: nothing started, nothing to do
        return shutdown.exit_code
    if pipeline.stream is not None and args.plane != "workflow":
        from rtflow.stages.stream.launcher import run_stream_local

        ignored = [
            flag
            for flag, given in (
                ("-o/--output", args.output != "-"),
                ("--output-topic", args.output_topic),
                ("--dead-letter", args.dead_letter),
                ("--dead-letter-topic", args.dead_letter_topic),
                ("--stand-in", args.stand_in),
                ("--stand-ins", args.stand_ins),
                ("--stage-env", args.stage_env),
                ("--triton-url", args.triton_url),
                ("--format json", args.format == "json"),
            )
            if given
        ]
        if ignored:
            raise LocalRunError(
                f"{ignored[0]} applies to the workflow plane; {pipeline.name!r} runs on its "
                "stream plane here (results and dead letters go to its topics): add "
                "--plane workflow, or leave the option out"
            )
        if args.kafka_topic and args.kafka_topic != pipeline.stream.source_topic:
            raise LocalRunError(
                f"the stream plane consumes the trigger's topic {pipeline.stream.source_topic!r}"
            )
        with reaper.active(mark=True):  # kill -9: its broker, Triton and workers go too
            return run_stream_local(
                args.pipeline,
                pipeline,
                events=args.events,
                brokers=args.kafka_brokers,
                triton_grpc=args.triton_grpc_url,
                workers=args.workers if args.workers != 1 else None,
                duration=args.duration,
                progress=not args.no_progress and sys.stderr.isatty(),
                log_dir=args.log_dir,
            )
    stand_ins: dict[str, StandIn] = {}
    for location in args.stand_ins:
        stand_ins.update(from_module(location, [s.name for s in pipeline.stages]))
    stand_ins.update(from_spec(s) for s in args.stand_in)
    stage_env = parse_stage_env(args.stage_env)
    needs_kafka = args.kafka_topic or args.output_topic or args.dead_letter_topic
    if needs_kafka and not args.kafka_brokers:
        raise LocalRunError("a Kafka topic needs --kafka-brokers (or RTFLOW_KAFKA_BROKERS)")
    events: Any
    if args.kafka_topic:
        from rtflow.stages.kafka_io import KafkaSource

        group = args.kafka_group
        kafka = [t.source for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
        if group is None:
            group = kafka[0].consumer_group if kafka else f"rtflow-local-{pipeline.name}"
        committed = bool(kafka) and kafka[0].read_committed  # as the EventSource reads it
        events = KafkaSource(
            args.kafka_topic,
            args.kafka_brokers,
            group=group,
            max_events=args.max_events,
            idle_timeout=args.idle_timeout,
            config={"isolation.level": "read_committed"} if committed else None,
        )
    else:
        events = JsonlSource(args.events)
    sinks: list[Sink] = []
    output: Sink
    dead_letter: Sink
    if args.output_topic:
        from rtflow.stages.kafka_io import KafkaSink

        output = KafkaSink(args.output_topic, args.kafka_brokers)
    else:
        output = JsonlSink(args.output)
    if args.dead_letter_topic:
        from rtflow.stages.kafka_io import KafkaSink

        dead_letter = KafkaSink(args.dead_letter_topic, args.kafka_brokers, letters=True)
    else:
        dead_letter = JsonlSink(args.dead_letter or "stderr")
    sinks = [output, dead_letter]
    approver: Approver
    if args.auto_approve:
        approver = auto_approve
    elif args.auto_reject:
        approver = auto_reject
    else:
        approver = terminal_approver()
    # The run's own warnings (a task retried, and why) as they happen, not only in the summary.
    say = logging.StreamHandler(sys.stderr)
    say.setFormatter(logging.Formatter("rtflow: %(message)s"))
    local_log = logging.getLogger("rtflow.local")
    local_log.addHandler(say)
    local_log.setLevel(logging.WARNING)
    local_log.propagate = False
    # Results go to the real stdout through the sink; anything else printing (a stand-in, a
    # library) goes to stderr so that stdout stays JSONL.
    real_stdout, sys.stdout = sys.stdout, sys.stderr
    try:  # SIGTERM / Ctrl-C: drain, commit, stop the children; kill -9: the reaper stops them
        with reaper.active(mark=True):
            summary = run_local(
                pipeline,
                events,
                output=output,
                dead_letter=dead_letter,
                workers=args.workers,
                max_in_flight=args.max_in_flight,
                stand_ins=stand_ins,
                approver=approver,
                progress=not args.no_progress,
                log_dir=args.log_dir,
                triton=args.triton_url,
                triton_grpc=args.triton_grpc_url,
                shutdown=shutdown,
                stage_env=stage_env,
            )
    finally:
        sys.stdout = real_stdout
        for sink in sinks:
            sink.close()
    if args.format == "json":
        print(json.dumps(summary.as_dict(), sort_keys=True), file=sys.stderr)
    else:
        print(summary.render(), file=sys.stderr)
        if summary.log_dir:
            print(f"worker logs: {summary.log_dir}", file=sys.stderr)
    return summary.exit_code
