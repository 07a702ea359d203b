"""The ``rtflow`` command.

Exit codes: 0 done; 1 ``--check`` found the folder stale; 2 the input is wrong (usage, a
pipeline definition, a file that does not load). An error is one line on stderr, without a
traceback unless ``--debug`` asks for it.
"""

from __future__ import annotations

import argparse
import gc
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from rtflow import ir
from rtflow.errors import RtflowError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2


def _version() -> str:
    try:
        return version("rtflow")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtflow",
        description="Compile real-time AI pipelines written in Python to Kubernetes manifests.",
    )
    parser.add_argument("--version", action="version", version=f"rtflow {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    compile_cmd = commands.add_parser(
        "compile",
        help="compile pipelines to manifests",
        description="Compile every pipeline in each target (PATH_OR_MODULE[:ATTR]).",
    )
    compile_cmd.add_argument("targets", nargs="+", metavar="PATH_OR_MODULE[:ATTR]")
    compile_cmd.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="DIR",
        help="folder to write (one file per object + kustomization.yaml), or - for a stream",
    )
    compile_cmd.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 with a diff when DIR is not what compile would write",
    )
    compile_cmd.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )

    lint_cmd = commands.add_parser(
        "lint",
        help="check manifests offline (structure, cross-resource, security, Argo linters)",
        description="Check folders or files of manifests; exit 0 clean, 1 findings, 2 usage.",
    )
    lint_cmd.add_argument("paths", nargs="+", metavar="PATH")
    lint_cmd.add_argument("--output", choices=("human", "json"), default="human")
    lint_cmd.add_argument(
        "--no-real-linters",
        action="store_true",
        help="skip argo lint --offline and argo-events lint even when installed",
    )
    lint_cmd.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )

    commands.add_parser(
        "run",
        help="run --local PATH_OR_MODULE[:PIPELINE] ...: run a pipeline here, with no cluster "
        "(`rtflow run --local --help` lists the options)",
    )

    docker_cmd = commands.add_parser(
        "stage-dockerfile", help="print the Dockerfile that puts your stage code on the base image"
    )
    docker_cmd.add_argument("source", help="module file or package folder, relative to the context")
    docker_cmd.add_argument("--requirements", help="a requirements file in the build context")
    docker_cmd.add_argument("--base-image", help="the Python-function base image to build on")

    graph_cmd = commands.add_parser("graph", help="print a pipeline's DAG as Mermaid text")
    graph_cmd.add_argument("targets", nargs="+", metavar="PATH_OR_MODULE[:ATTR]")
    graph_cmd.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    return parser


def _build(targets: Sequence[str]) -> list[ir.Pipeline]:
    from rtflow.loader import load_pipelines

    built: dict[str, tuple[str, ir.Pipeline]] = {}
    for target in targets:
        _, pipelines = load_pipelines(target)
        for definition in pipelines:
            pipeline = definition.build()
            if pipeline.name in built and built[pipeline.name][0] != target:
                raise RtflowError(
                    f"pipeline {pipeline.name!r} is defined in both {built[pipeline.name][0]} "
                    f"and {target}; give one of them another name"
                )
            built[pipeline.name] = (target, pipeline)
    return [p for _, p in sorted(built.values(), key=lambda item: item[1].name)]


def _compile(args: argparse.Namespace) -> int:
    from rtflow.generators import writers
    from rtflow.generators.compiler import compile_pipelines

    bundle = compile_pipelines(_build(args.targets))
    if args.output == "-":
        if args.check:
            raise RtflowError("--check needs a folder (-o DIR), not -")
        sys.stdout.write(writers.render_stream(bundle))
        return EXIT_OK
    root = Path(args.output)
    if args.check:
        diffs = writers.check_folder(bundle, root)
        if diffs:
            sys.stdout.write("".join(diffs))
            print(
                f"rtflow: {root} is stale ({len(diffs)} file(s)); run "
                f"`rtflow compile {' '.join(args.targets)} -o {root}`",
                file=sys.stderr,
            )
            return EXIT_FINDINGS
        print(f"rtflow: {root} is current", file=sys.stderr)
        return EXIT_OK
    changed = writers.write_folder(bundle, root)
    pipelines = ", ".join(bundle.pipelines())
    print(
        f"rtflow: compiled {pipelines} into {root} ({len(changed)} file(s) changed)",
        file=sys.stderr,
    )
    return EXIT_OK


def _lint(args: argparse.Namespace) -> int:
    from rtflow.verify.lint import UsageError, lint_paths

    try:
        report = lint_paths(args.paths, real_linters=not args.no_real_linters)
    except UsageError as error:
        raise RtflowError(str(error)) from None
    sys.stdout.write(report.json() if args.output == "json" else report.human())
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _stage_dockerfile(args: argparse.Namespace) -> int:
    from rtflow.stages.dockerfiles import DEFAULT_BASE_IMAGE, render_stage_dockerfile

    try:
        text = render_stage_dockerfile(
            args.source,
            requirements=args.requirements,
            base_image=args.base_image or DEFAULT_BASE_IMAGE,
        )
    except ValueError as error:
        raise RtflowError(str(error)) from None
    sys.stdout.write(text)
    return EXIT_OK


def _graph(args: argparse.Namespace) -> int:
    from rtflow.generators.mermaid import flowchart

    pipelines = _build(args.targets)
    for index, pipeline in enumerate(pipelines):
        if len(pipelines) > 1:
            sys.stdout.write(("\n" if index else "") + f"%% pipeline {pipeline.name}\n")
        sys.stdout.write(flowchart(pipeline))
    return EXIT_OK


def batch_gc() -> None:
    """A compile is a short batch run whose objects all live until it ends, so the cyclic GC
    would only re-scan an ever larger live graph: measured, it more than doubles the time of a
    10,000-stage compile (BENCHMARKS.md). Reference counting still frees everything acyclic."""
    gc.disable()


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["run"]:
        # `rtflow run --local ...` hands every remaining option to the local runner's parser.
        rest = given[1:]
        if "--local" not in rest:
            print(
                "rtflow: error: rtflow run needs --local (a cluster run is "
                "`argo submit --from workflowtemplate/NAME`)",
                file=sys.stderr,
            )
            return EXIT_USAGE
        rest.remove("--local")
        from rtflow.stages.local import main as run_local_main

        return run_local_main(rest)
    args = _parser().parse_args(given)
    batch_gc()
    handlers = {
        "compile": _compile,
        "graph": _graph,
        "lint": _lint,
        "stage-dockerfile": _stage_dockerfile,
    }
    try:
        return handlers[args.command](args)
    except RtflowError as error:
        if args.debug:
            traceback.print_exc()
        print(f"rtflow: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # pragma: no cover - `rtflow compile -o - | head`
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
