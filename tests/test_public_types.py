"""What mypy sees of rtflow.container() and rtflow.infer() (issue #14: they were typed as returning
``Any``/``Callable[..., Any]``, so a wrong call type-checked). mypy --strict runs on a pipeline
file over the mapped package tree that tools/typecheck.py builds."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from compiled import ROOT

SNIPPET = """
from typing import Any

import rtflow

block_card = rtflow.container(
    "block-card", image="ghcr.io/acme/card:1", args=["{reason}"], inputs={"reason": str}
)
typed: rtflow.ContainerStage = block_card
reveal_type(block_card)
block_card(reason="r")  # fine: inputs by name
block_card("r")  # containers take their inputs by name only
rtflow.infer("triton", "scorer", {"features": [1.0]})  # not a TritonServing


def use(server: Any) -> dict[str, Any]:
    rtflow.infer(server, "scorer", {}, via="rest")  # type: ignore[arg-type]  # used: a Literal
    return rtflow.infer(server, "scorer", {"features": [1.0]}, via="grpc")
"""


def test_mypy_sees_a_container_stage_and_infers_arguments(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import typecheck  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "tools"))
    tree = typecheck.build_tree()
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent(SNIPPET).lstrip("\n"))
    result = subprocess.run(
        [
            sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
            "--explicit-package-bases", "--follow-imports=silent",
            "--cache-dir", str(tmp_path / "mypy-cache"), str(snippet),
        ],
        cwd=tree, env={"MYPYPATH": str(tree), "PATH": ""}, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    lines = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": " in line]
    assert lines == [
        'note: Revealed type is "rtflow.stage.ContainerStage"',
        'error: Too many arguments for "__call__" of "ContainerStage"  [call-arg]',
        'error: Argument 1 to "infer" has incompatible type "str"; expected "TritonServing"  '
        "[arg-type]",
    ], result.stdout + result.stderr
    numbered = [line.split(":")[1] for line in result.stdout.splitlines() if "error:" in line]
    assert numbered == ["11", "12"]
