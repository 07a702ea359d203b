"""What each ``rtflow`` subcommand does, given its parsed arguments (see :mod:`.parser`).

Each handler returns the exit code; an :class:`RtflowError` becomes one line on stderr and
exit 2 in :func:`rtflow.cli.main`.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rtflow import ir
from rtflow.errors import RtflowError

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C


def print_json(data: Any) -> None:
    """One JSON document on stdout, keys sorted: what ``--format json`` promises scripts."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _relative(path: Path, root: Path) -> str:
    """A written file as a script would use it: relative to the output folder."""
    return (path.relative_to(root) if path.is_relative_to(root) else path).as_posix()


def build(targets: Sequence[str]) -> list[ir.Pipeline]:
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


def cmd_compile(args: argparse.Namespace) -> int:
    from rtflow.generators import writers
    from rtflow.generators.compiler import compile_pipelines

    relative = args.output != "-" and not Path(args.output).is_absolute()
    bundle = compile_pipelines(
        build(args.targets),
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
        sys.stdout.write(writers.render_stream(bundle, one_env(args.env)))
        return EXIT_OK
    root = Path(args.output)
    if args.check:
        diffs = writers.check_folder(bundle, root)
        if args.format == "json":
            print_json({"folder": str(root), "current": not diffs, "stale": len(diffs)})
            if diffs:
                return EXIT_FINDINGS
            return EXIT_OK
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
    if args.format == "json":
        print_json(
            {
                "pipelines": list(bundle.pipelines()),
                "folder": str(root),
                **{
                    what: sorted(_relative(p, root) for p in paths)
                    for what, paths in (
                        ("created", changes.created),
                        ("updated", changes.updated),
                        ("removed", changes.removed),
                        ("left", changes.left),
                    )
                },
            }
        )
        return EXIT_OK
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


def one_env(envs: Sequence[str] | None) -> str | None:
    """The environment a stream or a submit deploys: at most one makes sense there."""
    if envs and len(set(envs)) > 1:
        raise RtflowError(
            f"--env is given {len(set(envs))} times; a stream or a submit deploys one "
            "environment, pick one"
        )
    return envs[0] if envs else None


def cmd_lint(args: argparse.Namespace) -> int:
    from rtflow.verify.lint import UsageError, lint_paths

    try:
        report = lint_paths(args.paths, real_linters=not args.no_real_linters)
    except UsageError as error:
        raise RtflowError(str(error)) from None
    sys.stdout.write(report.json() if args.format == "json" else report.human())
    return EXIT_OK if report.ok else EXIT_FINDINGS


def cmd_submit(args: argparse.Namespace) -> int:
    from rtflow import submit
    from rtflow.generators.compiler import compile_pipelines

    pipelines = build([args.target])
    if len(pipelines) != 1:
        raise RtflowError(
            f"{args.target} defines {len(pipelines)} pipelines; pick one with "
            f"{args.target}:ATTR ({', '.join(p.name for p in pipelines)})"
        )
    (pipeline,) = pipelines
    env_name = one_env(args.env)
    bundle = compile_pipelines(pipelines, environments=[env_name] if env_name else None)
    env = next((e for e in pipeline.environments if e.name == env_name), None)
    namespace = (
        args.namespace or (env.namespace if env else None) or pipeline.namespace or "default"
    )
    template = next(m.body for m in bundle.manifests if m.kind == "WorkflowTemplate")
    params = submit.parse_params(args.param, template)
    cluster: submit.ArgoServer | submit.Kubernetes
    if args.argo_server:
        if not args.token_env or not os.environ.get(args.token_env):
            raise RtflowError(
                "--argo-server needs --token-env VAR naming a set environment variable "
                "with the bearer token"
            )
        cluster = submit.ArgoServer(args.argo_server, os.environ[args.token_env])
        name = cluster.submit(pipeline.name, params, namespace)
    else:
        cluster = submit.Kubernetes.from_kubeconfig(args.kubeconfig, args.context)
        if not args.no_apply:
            documents = [
                m.body
                for m in sorted(
                    bundle.deployed(pipeline.name, env_name), key=lambda m: m.apply_order
                )
            ]
            applied = cluster.apply(documents, namespace)
            print(f"rtflow: applied {len(applied)} object(s) to {namespace}", file=sys.stderr)
        name = cluster.create_workflow(pipeline.name, params, namespace)
    print(f"rtflow: submitted workflow {namespace}/{name}", file=sys.stderr)
    if args.format != "json":
        print(name, flush=True)
    if not args.wait:
        if args.format == "json":
            print_json({"namespace": namespace, "name": name, "phase": None})
        return EXIT_OK
    phase = cluster.wait(
        name,
        namespace,
        timeout=args.timeout,
        report=lambda p: print(f"rtflow: {name}: {p}", file=sys.stderr, flush=True),
    )
    if args.format == "json":
        print_json({"namespace": namespace, "name": name, "phase": phase})
    return EXIT_OK if phase == "Succeeded" else EXIT_FINDINGS


def cmd_stage_dockerfile(args: argparse.Namespace) -> int:
    from rtflow.stages.dockerfiles import (
        DEFAULT_BASE_IMAGE,
        render_base_dockerfile,
        render_stage_dockerfile,
    )

    try:
        if args.builtin:
            if args.source:
                raise RtflowError("--builtin prints a base image's Dockerfile: give no SOURCE")
            text = render_base_dockerfile(
                builtin=args.builtin,
                rtflow_requirement=args.rtflow_requirement,
                find_links=args.find_links,
            )
        elif not args.source:
            raise RtflowError("give the stage code (SOURCE...) or --builtin NAME")
        else:
            missing = local_imports_left_out(args.source, Path.cwd())
            if missing:
                names = ", ".join(repr(Path(m).stem) for m in missing)
                raise RtflowError(
                    f"{args.source[0]} imports {names} from the build context, which the image "
                    "would not have; add it: rtflow "
                    f"stage-dockerfile {shlex.join([*args.source, *missing])}"
                )
            text = render_stage_dockerfile(
                args.source,
                requirements=args.requirements,
                base_image=args.base_image or DEFAULT_BASE_IMAGE,
            )
    except ValueError as error:
        raise RtflowError(str(error)) from None
    sys.stdout.write(text)
    return EXIT_OK


def local_imports_left_out(sources: Sequence[str], context: Path) -> list[str]:
    """Modules and packages of the build context that the stage module imports but the
    Dockerfile would not copy (``fraud_detection.py`` without ``models``): the stage would fail
    with ModuleNotFoundError in the cluster. Only a module that is there to read is checked."""
    import ast

    module = context / sources[0]
    if module.suffix != ".py" or not module.is_file():
        return []
    try:
        tree = ast.parse(module.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return []  # not ours to report: loading the pipeline says what is wrong with it
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
    given = {Path(s).name for s in sources} | {Path(s).stem for s in sources}
    folder = module.parent
    found = []
    for name in sorted(imported - given):
        if (folder / f"{name}.py").is_file():
            found.append((Path(sources[0]).parent / f"{name}.py").as_posix())
        elif (folder / name).is_dir() and any((folder / name).glob("*.py")):
            found.append((Path(sources[0]).parent / name).as_posix())
    return found


def cmd_graph(args: argparse.Namespace) -> int:
    from rtflow import latency
    from rtflow.generators.mermaid import flowchart

    pipelines = build(args.targets)
    if args.format == "json":
        print_json(
            {
                "pipelines": [
                    {
                        "name": p.name,
                        "latency_budget_ms": p.latency_budget_ms,
                        "mermaid": flowchart(p),
                        "paths": [
                            {
                                "tasks": list(e.tasks),
                                "plane": e.plane,
                                "estimate_ms": None if e.human is not None else round(e.ms, 3),
                                "waits_for": e.human,
                                "handed_off": e.handed_off,
                                "line": e.line(p.latency_budget_ms),
                            }
                            for e in latency.estimates(p)
                        ],
                    }
                    for p in pipelines
                ]
            }
        )
        return EXIT_OK
    for index, pipeline in enumerate(pipelines):
        if len(pipelines) > 1:
            sys.stdout.write(("\n" if index else "") + f"%% pipeline {pipeline.name}\n")
        sys.stdout.write(flowchart(pipeline))
        # Each path's latency estimate (rtflow.latency), as Mermaid comments: the chart still
        # renders, and a reader sees which plane meets the budget.
        for estimate in latency.estimates(pipeline):
            sys.stdout.write(f"%% latency: {estimate.line(pipeline.latency_budget_ms)}\n")
    return EXIT_OK
