"""How compile time and memory grow with pipeline size, against hera building the same DAG.

For N in 100, 1,000 and 10,000 stages this builds a layered DAG of N container stages (each
stage reads the outputs of one or two earlier stages) and times, in a fresh process each:

* rtflow: define the stages and pipeline with the SDK, build the IR, generate, check the bundle
  and render the YAML stream (everything `rtflow compile -o -` does after import);
* hera: the same WorkflowTemplate written with hera's DSL (same templates, parameters,
  resources and security contexts) and ``to_yaml()``.

Also: `rtflow compile examples/fraud_detection.py` wall time against the import floor
`python -c "import hera.workflows"`. Figures go to BENCHMARKS.md (``--write``).

    python benchmarks/compile_scale.py --write
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_report import replace_section

ROOT = Path(__file__).resolve().parents[1]
SIZES = (100, 1_000, 10_000)
IMAGE = "ghcr.io/acme/bench:1.0"


def parents(i: int) -> list[int]:
    """Stage i reads stage i-1 and, every third stage, also stage i//2: a DAG with joins."""
    if i == 0:
        return []
    return [i - 1] if i % 3 else sorted({i - 1, i // 2})


def run_rtflow(n: int) -> int:
    import rtflow
    from rtflow.generators.compiler import compile_pipelines
    from rtflow.generators.writers import render_stream

    stages = [
        rtflow.container(
            f"s{i}",
            image=IMAGE,
            args=["--in={a}"] if i else [],
            inputs={"a": str, "b": str}
            if i and len(parents(i)) == 2
            else ({"a": str} if i else {}),
            outputs={"out": str},
            cpu="100m",
            memory="64Mi",
        )
        for i in range(n)
    ]

    @rtflow.pipeline(name=f"bench-{n}")
    def bench() -> None:
        calls: list[Any] = []
        for i in range(n):
            ps = parents(i)
            kwargs = {k: calls[p] for k, p in zip(("a", "b"), ps, strict=False)}
            calls.append(stages[i](**kwargs))

    # From a few thousand stages on, the WorkflowTemplate is over the 1.5 MiB the API server
    # stores, and compile says so (bundle.check_object_sizes). The benchmark measures the
    # compile's own scaling, so that one check is left out here (it is a json.dumps per object).
    from rtflow.generators import bundle

    checks = tuple(c for c in bundle.CHECKS if c is not bundle.check_object_sizes)
    original, bundle.CHECKS = bundle.CHECKS, checks
    try:
        text = render_stream(compile_pipelines([bench.build()]))
    finally:
        bundle.CHECKS = original
    return len(text)


def run_hera(n: int) -> int:
    from hera.workflows import DAG, Container, Parameter, WorkflowTemplate
    from hera.workflows import models as m

    from rtflow.generators import security

    with WorkflowTemplate(
        name=f"bench-{n}",
        entrypoint="main",
        security_context=security.pod_security_context(),
        volumes=[security.scratch_volume()],
    ) as wt:
        templates = []
        for i in range(n):
            names = ["a", "b"][: len(parents(i))]
            templates.append(
                Container(
                    name=f"s{i}",
                    image=IMAGE,
                    args=["--in={{inputs.parameters.a}}"] if i else None,
                    inputs=[Parameter(name=k) for k in names],
                    outputs=[
                        Parameter(
                            name="out", value_from=m.ValueFrom(path="/tmp/rtflow/outputs/out")
                        )
                    ],
                    resources=m.ResourceRequirements(
                        requests={"cpu": m.Quantity("100m"), "memory": m.Quantity("64Mi")},
                        limits={"cpu": m.Quantity("1"), "memory": m.Quantity("64Mi")},
                    ),
                    security_context=security.container_security_context(),
                    volume_mounts=[security.scratch_mount()],
                )
            )
        with DAG(name="main"):
            tasks: list[Any] = []
            for i in range(n):
                ps = parents(i)
                arguments = {
                    k: f"{{{{tasks.s{p}.outputs.parameters.out}}}}"
                    for k, p in zip(("a", "b"), ps, strict=False)
                }
                task = templates[i](name=f"s{i}", arguments=arguments)
                for p in ps:
                    tasks[p] >> task
                tasks.append(task)
    return len(wt.to_yaml())


def one(kind: str, n: int) -> None:
    """Run in a fresh process: print seconds and peak RSS as JSON.

    ``rtflow`` runs as the CLI does (cyclic GC off for the batch, see rtflow.cli.batch_gc);
    ``rtflow-gc`` keeps the GC on, to show what that setting buys; ``hera`` runs as users run it.
    """
    import hera.workflows  # noqa: F401  # both sides pay the import before the clock starts

    import rtflow.generators.compiler  # noqa: F401
    from rtflow.cli import batch_gc

    if kind == "rtflow":
        batch_gc()

    baseline_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    size = run_hera(n) if kind == "hera" else run_rtflow(n)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_mib": peak / 1024,
                "delta_mib": (peak - baseline_rss) / 1024,
                "bytes": size,
            }
        )
    )


def measure(kind: str, n: int, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, __file__, "--one", kind, str(n)],
            check=True,
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout
        runs.append(json.loads(out))
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_mib": max(r["peak_mib"] for r in runs),
        "delta_mib": max(r["delta_mib"] for r in runs),
        "bytes": runs[0]["bytes"],
    }


def wall(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--one", nargs=2, metavar=("KIND", "N"))
    parser.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    if args.one:
        one(args.one[0], int(args.one[1]))
        return 0

    rows = []
    for n in args.sizes:
        r = measure("rtflow", n, args.repeats)
        g = measure("rtflow-gc", n, args.repeats)
        # hera's DSL grows faster than linearly; one run is enough to see it at 10,000.
        h = measure("hera", n, 1 if n >= 10_000 else args.repeats)
        rows.append((n, r, g, h))
        print(
            f"{n:>6} stages: rtflow {r['seconds']:.3f}s {r['delta_mib']:.0f} MiB"
            f" | rtflow gc on {g['seconds']:.3f}s | hera {h['seconds']:.3f}s {h['delta_mib']:.0f} MiB"
        )

    with tempfile.TemporaryDirectory() as out:
        rtflow_bin = [
            sys.executable,
            "-m",
            "rtflow.cli",
            "compile",
            "examples/fraud_detection.py",
            "-o",
            out,
        ]
        compile_wall = wall(rtflow_bin, 5)
    floor = wall([sys.executable, "-c", "import hera.workflows"], 5)
    python_floor = wall([sys.executable, "-c", "pass"], 5)
    print(
        f"rtflow compile fraud_detection: {compile_wall:.3f}s; import hera.workflows: {floor:.3f}s; python: {python_floor:.3f}s"
    )

    if args.write:
        write_report(rows, compile_wall, floor, python_floor, args.repeats)
    return 0


def write_report(
    rows: list[tuple[int, dict[str, float], dict[str, float], dict[str, float]]],
    compile_wall: float,
    floor: float,
    python_floor: float,
    repeats: int,
) -> None:
    by_n = {n: (r, g) for n, r, g, _ in rows}
    lines = [
        "## Compile scale (`benchmarks/compile_scale.py`)",
        "",
        f"Command: `python benchmarks/compile_scale.py --write`. Median of {repeats} fresh processes per"
        " cell (hera at 10,000 stages: one run); memory is the peak RSS growth after imports."
        f" Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()},"
        f" {platform.platform()}.",
        "",
        "A layered DAG of N container stages (every third stage joins two parents). rtflow: SDK"
        " definitions, IR build and validation, WorkflowTemplate generation, bundle checks and the YAML"
        ' stream, run as the CLI runs it (cyclic GC off for the batch); "rtflow, GC on" is the same'
        " with the default GC. hera: the same WorkflowTemplate (same templates, parameters, resources,"
        " security contexts) built with hera's DSL and `to_yaml()`.",
        "",
        "| stages | rtflow s | rtflow MiB | rtflow, GC on s | hera s | hera MiB | rtflow / hera |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, r, g, h in rows:
        lines.append(
            f"| {n:,} | {r['seconds']:.3f} | {r['delta_mib']:.0f} | {g['seconds']:.3f}"
            f" | {h['seconds']:.3f} | {h['delta_mib']:.0f} | {r['seconds'] / h['seconds']:.2f} |"
        )
    lines.append("")
    if 1_000 in by_n and 10_000 in by_n:
        growth = by_n[10_000][0]["seconds"] / by_n[1_000][0]["seconds"]
        growth_gc = by_n[10_000][1]["seconds"] / by_n[1_000][1]["seconds"]
        verdict = "met" if growth <= 12 else "missed"
        lines.append(
            f"- Growth 1,000 -> 10,000 stages: {growth:.1f}x (target <= 12x: {verdict});"
            f" with the GC on it would be {growth_gc:.1f}x."
        )
    slower = [n for n, r, _, h in rows if r["seconds"] > h["seconds"]]
    lines.append(
        "- rtflow vs the direct hera build: "
        + (
            "no slower at every size (target met)."
            if not slower
            else f"slower at {', '.join(map(str, slower))} stages (target missed)."
        )
    )
    lines.append(
        f"- `rtflow compile examples/fraud_detection.py -o DIR`: {compile_wall:.3f} s wall; the import"
        f' floor `python -c "import hera.workflows"`: {floor:.3f} s; bare `python -c pass`:'
        f" {python_floor:.3f} s (rtflow above the hera floor: {compile_wall - floor:.3f} s)."
    )
    replace_section("## Compile scale (", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
