"""The ``rtflow`` command line: every subcommand's arguments, in one parser (docs/cli.md is
generated from it by ``tools/cli_reference.py``).

Conventions, the same in every subcommand:

* ``-o/--output`` says **where** the result goes: a folder (``compile``), a file (``run``), or
  ``-`` for stdout.
* ``--format text|json`` says **how** a command's report is printed; ``json`` is one JSON
  document for scripts (compile's summary, graph, lint's findings, run's summary, submit's
  workflow). ``lint --output human|json`` is kept as an alias of ``--format``.
* ``--debug`` shows tracebacks; it may come before or after the subcommand.
* Exit codes: 0 done, 1 findings (stale folder, lint findings, a failed event or workflow),
  2 usage or a wrong definition (one line, no traceback), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

__all__ = ["build_parser"]

FORMATS = ("text", "json")


def _version() -> str:
    try:
        return version("rtflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _debug(parser: argparse.ArgumentParser) -> None:
    """``--debug`` after the subcommand too (``rtflow run --local X --debug``)."""
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )


def _format(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help=f"how to print {what} (default: text)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtflow",
        description="Compile real-time AI pipelines written in Python to Kubernetes manifests, "
        "check manifests, submit them, or run a pipeline here.",
        epilog="Exit codes: 0 done, 1 findings, 2 usage or a wrong definition, 130 interrupted. "
        "-o/--output is where a result goes; --format text|json how a report is printed.",
    )
    parser.add_argument("--version", action="version", version=f"rtflow {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _compile(commands)
    _graph(commands)
    _lint(commands)
    _run(commands)
    _submit(commands)
    _stage_dockerfile(commands)
    _completion(commands)
    return parser


def _compile(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "compile",
        help="compile pipelines to manifests",
        description="Compile every pipeline in each target (PATH_OR_MODULE[:ATTR]) to a folder "
        "(one file per object, kustomization.yaml, Argo CD Applications) or a YAML stream.",
    )
    cmd.add_argument("targets", nargs="+", metavar="PATH_OR_MODULE[:ATTR]")
    cmd.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder to write (one file per object + kustomization.yaml), or - for a stream",
    )
    cmd.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff when DIR is not what compile would write",
    )
    cmd.add_argument(
        "--env",
        action="append",
        metavar="ENV",
        help="write only this environment's overlay (repeatable; default: every declared one); "
        "with -o -, stream the objects as that environment's overlay builds them",
    )
    cmd.add_argument("--repo-url", metavar="URL", help="Git repository Argo CD syncs DIR from")
    cmd.add_argument(
        "--revision", metavar="REV", help="branch, tag or commit Argo CD syncs (default HEAD)"
    )
    cmd.add_argument(
        "--path-prefix",
        metavar="PATH",
        help="DIR's path inside the repository (default: DIR when it is relative)",
    )
    _format(cmd, "the summary (json: on stdout, with the files created, updated, removed)")
    _debug(cmd)


def _graph(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "graph",
        help="print a pipeline's DAG as Mermaid text",
        description="Print each pipeline's DAG as a Mermaid flowchart, with every path's "
        "latency estimate against the budget as %%%% latency: lines.",
    )
    cmd.add_argument("targets", nargs="+", metavar="PATH_OR_MODULE[:ATTR]")
    cmd.add_argument(
        "--format",
        choices=("mermaid", "json"),
        default="mermaid",
        help="mermaid text, or json: per pipeline its Mermaid text and path estimates",
    )
    _debug(cmd)


def _lint(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "lint",
        help="check manifests offline (structure, cross-resource, security, Argo linters)",
        description="Check folders or files of manifests; exit 0 clean, 1 findings, 2 usage.",
    )
    cmd.add_argument("paths", nargs="+", metavar="PATH")
    cmd.add_argument(
        "--format",
        choices=("text", "human", "json"),
        default="text",
        help="how to print the findings (human is text)",
    )
    cmd.add_argument(  # the first spelling, kept for scripts written against it
        "--output", dest="format", choices=("human", "json"), help=argparse.SUPPRESS
    )
    cmd.add_argument(
        "--no-real-linters",
        action="store_true",
        help="skip argo lint --offline and argo-events lint even when installed",
    )
    _debug(cmd)


def _run(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "run",
        help="run a pipeline here over a stream of events, with no cluster (--local)",
        description="Run a pipeline on this machine: events from a JSONL file, stdin or a Kafka "
        "topic; results as JSONL on stdout (or -o FILE, or a topic); failed events to the "
        "dead-letter output with the reason. Exit 0 every event succeeded, 1 one failed, "
        "2 the run cannot start, 130 Ctrl-C (after draining).",
    )
    cmd.add_argument(
        "--local",
        action="store_true",
        required=True,
        help="run on this machine (required: a cluster run is `rtflow submit`)",
    )
    cmd.add_argument("pipeline", metavar="PATH_OR_MODULE[:PIPELINE]")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument("--events", metavar="FILE|-", help="JSONL events (- for stdin)")
    source.add_argument("--kafka-topic", help="consume events from this topic")
    cmd.add_argument(
        "--kafka-brokers",
        default=os.environ.get("RTFLOW_KAFKA_BROKERS"),
        help="host:port,... (default: $RTFLOW_KAFKA_BROKERS)",
    )
    cmd.add_argument("--kafka-group", help="consumer group (default: the trigger's)")
    cmd.add_argument("--max-events", type=int, help="stop after this many events")
    cmd.add_argument(
        "--idle-timeout", type=float, help="stop after this many seconds without a Kafka event"
    )
    out = cmd.add_mutually_exclusive_group()
    out.add_argument(
        "-o", "--output", default="-", metavar="FILE|-", help="results as JSONL (default: stdout)"
    )
    out.add_argument("--output-topic", help="results to this Kafka topic")
    dead = cmd.add_mutually_exclusive_group()
    dead.add_argument(
        "--dead-letter", metavar="FILE", help="failed events as JSONL (default: stderr)"
    )
    dead.add_argument("--dead-letter-topic", metavar="TOPIC", help="failed events to a topic")
    cmd.add_argument("--workers", type=int, default=1, help="worker processes per stage")
    cmd.add_argument("--max-in-flight", type=int, default=16, help="events run at once")
    approve = cmd.add_mutually_exclusive_group()
    approve.add_argument(
        "--auto-approve",
        action="store_true",
        help="approve every approval (default: ask on the terminal; an approval with "
        "timeout= stops asking then and takes its on_timeout decision)",
    )
    approve.add_argument("--auto-reject", action="store_true", help="reject every approval")
    cmd.add_argument(
        "--stand-in",
        action="append",
        default=[],
        metavar="STAGE=MODULE:FUNCTION",
        help="a Python function standing in for a stage (a container stage needs one); "
        "MODULE may be a .py file",
    )
    cmd.add_argument(
        "--stand-ins",
        action="append",
        default=[],
        metavar="MODULE_OR_FILE",
        help="every function in it named after a stage stands in for it (block_card for "
        "block-card)",
    )
    cmd.add_argument(
        "--stage-env",
        action="append",
        default=[],
        metavar="STAGE:NAME[=VALUE]",
        help="set a stage worker's environment variable over the stage's own env=; without "
        "=VALUE, take this shell's value instead (or none, when it has none). For an "
        "rtflow.http step, STAGE:HEADER=VALUE gives a header the cluster reads from a Secret "
        "(STAGE:HEADER: this shell's variable of that name); without it the call fails",
    )
    cmd.add_argument(
        "--triton-url",
        metavar="URL",
        help="an existing Triton's HTTP URL for inference stages (default: start one here "
        "from the pipeline's model declarations, stopped at the end)",
    )
    cmd.add_argument(
        "--triton-grpc-url",
        metavar="HOST:PORT",
        help="its gRPC address, for via='grpc' stages (default: port 8001 of --triton-url's host)",
    )
    cmd.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress on stderr (default: a bar on a terminal, a line every "
        "$RTFLOW_PROGRESS_INTERVAL s, 5 by default, elsewhere)",
    )
    cmd.add_argument("--log-dir", type=Path, help="worker logs (default: a temporary folder)")
    cmd.add_argument(
        "--plane",
        choices=("stream", "workflow"),
        help="a pipeline with stream=rtflow.Stream(...) runs on the stream plane (long-running "
        "Kafka workers, exactly once) unless --plane workflow; the workflow plane runs each "
        "event as a workflow",
    )
    cmd.add_argument(
        "--duration", type=float, help="stream plane: run this many seconds (default: until "
        "every event fed from --events is done)",
    )  # fmt: skip
    _format(cmd, "the summary, the last line on stderr (workflow plane)")
    _debug(cmd)


def _submit(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "submit",
        help="apply a pipeline's objects and start a Workflow from its template",
        description="Like `argo submit --from workflowtemplate/NAME`: server-side apply the "
        "compiled objects (kubeconfig or in-cluster), then create a Workflow; or submit through "
        "the Argo Server. Exit 0 submitted (or Succeeded with --wait), 1 Failed/Error, 2 error.",
    )
    cmd.add_argument("target", metavar="PATH_OR_MODULE[:ATTR]")
    cmd.add_argument(
        "--env", action="append", metavar="ENV", help="apply this environment's overlay"
    )
    cmd.add_argument(
        "-n", "--namespace", help="default: the environment's, the pipeline's, else 'default'"
    )
    cmd.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    cmd.add_argument(
        "--wait",
        action="store_true",
        help="watch the Workflow until it ends: exit 0 Succeeded, 1 Failed or Error",
    )
    cmd.add_argument("--timeout", type=float, default=3600.0, help="--wait limit, s (then exit 2)")
    cmd.add_argument("--no-apply", action="store_true", help="only create the Workflow")
    cmd.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, in-cluster")
    cmd.add_argument("--context", help="kubeconfig context")
    cmd.add_argument("--argo-server", metavar="URL", help="submit through the Argo Server")
    cmd.add_argument(
        "--token-env", metavar="VAR", help="environment variable holding the Argo Server token"
    )
    _format(cmd, "the workflow submitted (json: namespace, name, and phase with --wait)")
    _debug(cmd)


def _stage_dockerfile(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "stage-dockerfile",
        help="print the Dockerfile of a stage image (your code, or a built-in base image)",
        description="Print a Dockerfile that copies your stage code (a module, then the "
        "packages it imports) onto the Python-function base image; or, with --builtin, the "
        "Dockerfile of one of rtflow's own images (the base, kafka-publish, http-callback, "
        "triton-client, retrieval, canary, stream-worker), which you build and push to your "
        "registry.",
    )
    cmd.add_argument(
        "source",
        nargs="*",
        help="module file or package folder, relative to the context (several: the module "
        "first, then the packages it imports)",
    )
    cmd.add_argument("--requirements", help="a requirements file in the build context")
    cmd.add_argument("--base-image", help="the Python-function base image to build on")
    cmd.add_argument(
        "--builtin",
        metavar="NAME",
        help="print the Dockerfile of rtflow's image NAME instead: python-function (the base), "
        "kafka-publish, http-callback, triton-client, retrieval, canary or stream-worker",
    )
    cmd.add_argument(
        "--rtflow-requirement",
        default="rtflow",
        metavar="REQ",
        help="--builtin: what pip installs as rtflow (a wheel's path in the context, say)",
    )
    cmd.add_argument(
        "--find-links",
        metavar="DIR",
        help="--builtin: a folder of wheels in the build context, searched before the index",
    )
    _debug(cmd)


def _completion(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "completion",
        help="print the shell completion script (argcomplete)",
        description="Print the script that completes rtflow's commands and options in your "
        'shell: eval "$(rtflow completion bash)" in ~/.bashrc, or '
        'eval "$(rtflow completion zsh)" in ~/.zshrc.',
    )
    cmd.add_argument("shell", choices=("bash", "zsh", "fish", "tcsh"))
