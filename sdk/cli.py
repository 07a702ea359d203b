"""The ``rtflow`` command.

Exit codes: 0 done; 1 ``--check`` found the folder stale; 2 the input is wrong (usage, a
pipeline definition, a file that does not load). An error is one line on stderr, without a
traceback unless ``--debug`` asks for it.
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import signal
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
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


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
        "--env",
        action="append",
        metavar="ENV",
        help="write only this environment's overlay (repeatable; default: every declared one); "
        "with -o -, stream the objects as that environment's overlay builds them",
    )
    compile_cmd.add_argument(
        "--repo-url", metavar="URL", help="Git repository Argo CD syncs DIR from"
    )
    compile_cmd.add_argument(
        "--revision", metavar="REV", help="branch, tag or commit Argo CD syncs (default HEAD)"
    )
    compile_cmd.add_argument(
        "--path-prefix",
        metavar="PATH",
        help="DIR's path inside the repository (default: DIR when it is relative)",
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

    submit_cmd = commands.add_parser(
        "submit",
        help="apply a pipeline's objects and start a Workflow from its template",
        description="Like `argo submit --from workflowtemplate/NAME`: server-side apply the "
        "compiled objects (kubeconfig or in-cluster), then create a Workflow; or submit through "
        "the Argo Server. Exit 0 submitted (or Succeeded with --wait), 1 Failed/Error, 2 error.",
    )
    submit_cmd.add_argument("target", metavar="PATH_OR_MODULE[:ATTR]")
    submit_cmd.add_argument(
        "--env", action="append", metavar="ENV", help="apply this environment's overlay"
    )
    submit_cmd.add_argument(
        "-n", "--namespace", help="default: the environment's, the pipeline's, else 'default'"
    )
    submit_cmd.add_argument(
        "-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="repeatable"
    )
    submit_cmd.add_argument("--wait", action="store_true", help="follow the run until it ends")
    submit_cmd.add_argument("--timeout", type=float, default=3600.0, help="--wait limit, s")
    submit_cmd.add_argument("--no-apply", action="store_true", help="only create the Workflow")
    submit_cmd.add_argument("--kubeconfig", help="default: $KUBECONFIG, ~/.kube/config, in-cluster")
    submit_cmd.add_argument("--context", help="kubeconfig context")
    submit_cmd.add_argument("--argo-server", metavar="URL", help="submit through the Argo Server")
    submit_cmd.add_argument(
        "--token-env", metavar="VAR", help="environment variable holding the Argo Server token"
    )
    submit_cmd.add_argument(
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
    docker_cmd.add_argument(
        "source",
        nargs="+",
        help="module file or package folder, relative to the context (several: the module "
        "first, then the packages it imports)",
    )
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

    relative = args.output != "-" and not Path(args.output).is_absolute()
    bundle = compile_pipelines(
        _build(args.targets),
        environments=args.env,
        repo_url=args.repo_url,
        revision=args.revision,
        path_prefix=args.path_prefix,
        default_path_prefix=Path(args.output).as_posix() if relative else None,
        command=compile_command(args),
    )
    if args.output == "-":
        if args.check:
            raise RtflowError("--check needs a folder (-o DIR), not -")
        sys.stdout.write(writers.render_stream(bundle, _one_env(args.env)))
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
    changes = writers.write_folder(bundle, root)
    pipelines = ", ".join(bundle.pipelines())
    print(f"rtflow: compiled {pipelines} into {root} ({changes.summary()})", file=sys.stderr)
    for path in changes.removed:
        print(f"  removed {path} (no longer produced)", file=sys.stderr)
    for path in changes.left:
        print(
            f"  left {path}: no longer produced, but edited since rtflow wrote it; "
            "delete it yourself if it is not needed",
            file=sys.stderr,
        )
    return EXIT_OK


def compile_command(args: argparse.Namespace) -> str:
    """The compile command line for the output's README, as it reruns from the same folder:
    paths relative to here where they can be, an absolute output folder as DIR (a machine's
    paths do not belong in Git, and moving the folder must not change its files). ``--env``
    is left out: it picks which overlays to rewrite, not what the folder holds."""

    def shown(path: str) -> str:
        given = Path(path)
        if not given.is_absolute():
            return given.as_posix()
        try:
            return given.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return path

    parts = ["rtflow", "compile", *(shown(t) for t in args.targets)]
    output = args.output if args.output == "-" else shown(args.output)
    parts += ["-o", "DIR" if Path(output).is_absolute() else output]
    for flag, value in (
        ("--repo-url", args.repo_url),
        ("--revision", args.revision),
        ("--path-prefix", args.path_prefix),
    ):
        if value is not None:
            parts += [flag, value]
    return shlex.join(parts)


def _one_env(envs: Sequence[str] | None) -> str | None:
    """The environment a stream or a submit deploys: at most one makes sense there."""
    if envs and len(set(envs)) > 1:
        raise RtflowError(
            f"--env is given {len(set(envs))} times; a stream or a submit deploys one "
            "environment, pick one"
        )
    return envs[0] if envs else None


def _lint(args: argparse.Namespace) -> int:
    from rtflow.verify.lint import UsageError, lint_paths

    try:
        report = lint_paths(args.paths, real_linters=not args.no_real_linters)
    except UsageError as error:
        raise RtflowError(str(error)) from None
    sys.stdout.write(report.json() if args.output == "json" else report.human())
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _submit(args: argparse.Namespace) -> int:
    from rtflow import submit
    from rtflow.generators.compiler import compile_pipelines

    pipelines = _build([args.target])
    if len(pipelines) != 1:
        raise RtflowError(
            f"{args.target} defines {len(pipelines)} pipelines; pick one with "
            f"{args.target}:ATTR ({', '.join(p.name for p in pipelines)})"
        )
    (pipeline,) = pipelines
    env_name = _one_env(args.env)
    bundle = compile_pipelines(pipelines, environments=[env_name] if env_name else None)
    env = next((e for e in pipeline.environments if e.name == env_name), None)
    namespace = (
        args.namespace or (env.namespace if env else None) or pipeline.namespace or "default"
    )
    template = next(m.body for m in bundle.manifests if m.kind == "WorkflowTemplate")
    params = submit.parse_params(args.param, template)
    if args.argo_server:
        if not args.token_env or not os.environ.get(args.token_env):
            raise RtflowError(
                "--argo-server needs --token-env VAR naming a set environment variable "
                "with the bearer token"
            )
        endpoint = submit.Endpoint(
            base=args.argo_server.rstrip("/"),
            headers={"Authorization": f"Bearer {os.environ[args.token_env]}"},
        )
        http = submit.Http(endpoint, what="Argo Server")
        name = submit.submit_argo_server(http, pipeline.name, params, namespace)
    else:
        http = submit.Http(
            submit.kube_endpoint(args.kubeconfig, args.context), what="Kubernetes API"
        )
        if not args.no_apply:
            documents = [
                m.body
                for m in sorted(
                    bundle.deployed(pipeline.name, env_name), key=lambda m: m.apply_order
                )
            ]
            applied = submit.apply(http, documents, namespace)
            print(f"rtflow: applied {len(applied)} object(s) to {namespace}", file=sys.stderr)
        name = submit.submit_kubernetes(http, pipeline.name, params, namespace)
    print(f"rtflow: submitted workflow {namespace}/{name}", file=sys.stderr)
    print(name)
    if not args.wait:
        return EXIT_OK
    phase = submit.wait(
        submit.phase_getter(http, name, namespace, argo_server=bool(args.argo_server)),
        timeout=args.timeout,
        report=lambda p: print(f"rtflow: {name}: {p}", file=sys.stderr),
    )
    return EXIT_OK if phase == "Succeeded" else EXIT_FINDINGS


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
    from rtflow import latency
    from rtflow.generators.mermaid import flowchart

    pipelines = _build(args.targets)
    for index, pipeline in enumerate(pipelines):
        if len(pipelines) > 1:
            sys.stdout.write(("\n" if index else "") + f"%% pipeline {pipeline.name}\n")
        sys.stdout.write(flowchart(pipeline))
        # Each path's latency estimate (rtflow.latency), as Mermaid comments: the chart still
        # renders, and a reader sees which plane meets the budget.
        for estimate in latency.estimates(pipeline):
            sys.stdout.write(f"%% latency: {estimate.line(pipeline.latency_budget_ms)}\n")
    return EXIT_OK


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_OK)


def batch_gc() -> None:
    """A compile is a short batch run whose objects all live until it ends, so the cyclic GC
    would only re-scan an ever larger live graph: measured, it more than doubles the time of a
    10,000-stage compile (BENCHMARKS.md). Reference counting still frees everything acyclic."""
    gc.disable()


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if given[:1] == ["run"]:
        # Until the local run installs its own handlers (drain, commit, stop the children), a
        # SIGTERM finds nothing started and nothing read: a clean exit, not 143.
        signal.signal(signal.SIGTERM, _exit_cleanly)
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
        "submit": _submit,
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
    except KeyboardInterrupt:
        print("rtflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
