"""Same meaning, same bytes: GitOps diffs stay clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from compiled import ROOT, compile_docs

import rtflow
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import render_folder

IMAGE = "ghcr.io/acme/tools:1.0"


@rtflow.stage(image=IMAGE)
def left(n: int) -> int:
    return n


@rtflow.stage(image=IMAGE)
def right(n: int) -> int:
    return n


@rtflow.stage(image=IMAGE)
def join(a: int, b: int) -> None:
    del a, b


def _compile_cli(output: Path, hash_seed: str) -> dict[str, bytes]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "rtflow.cli",
            "compile",
            "examples/fraud_detection.py",
            "-o",
            str(output),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return {
        str(p.relative_to(output)): p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file()
    }


def test_two_compiles_in_fresh_processes_are_byte_identical(tmp_path: Path) -> None:
    first = _compile_cli(tmp_path / "a", "1")
    second = _compile_cli(tmp_path / "b", "2024")
    assert first == second
    # 31 objects (13 of the stream plane, 5 more NetworkPolicies), 2 kustomizations, README,
    # 2 model configs, 17 overlay files, 2 Applications, the record of what was written
    assert len(first) == 56


def test_declaration_order_and_dict_order_do_not_matter() -> None:
    worker_a = rtflow.container(
        "worker", image=IMAGE, env={"B": "2", "A": "1"}, labels={"y": "1", "x": "2"}
    )
    worker_b = rtflow.container(
        "worker", image=IMAGE, labels={"x": "2", "y": "1"}, env={"A": "1", "B": "2"}
    )

    @rtflow.pipeline(name="order", annotations={"b": "1", "a": "2"})
    def one(n: int) -> None:
        x = left(n)
        y = right(n)
        join(a=x, b=y)
        worker_a()

    @rtflow.pipeline(name="order", annotations={"a": "2", "b": "1"})
    def two(n: int) -> None:
        worker_b()
        y = right(n)
        x = left(n)
        join(b=y, a=x)

    def rendered(p: rtflow.Pipeline) -> dict[str, str]:
        return render_folder(compile_pipelines([p.build()]))

    assert rendered(one) == rendered(two)
    assert compile_docs(one) == compile_docs(two)
