"""Every command and Python block of README.md and docs/ runs as shown (issue #14).

Each runnable block runs verbatim in a copy of this repository (its tracked files), so what a
reader copies from a fresh clone is what is tested: ``sh`` blocks with ``bash -e`` (the
installed ``rtflow`` first on PATH), ``python`` blocks as a script. Blocks a reader is told to
save (``file=NAME``) are written to the copy first. Blocks that need a cluster or Docker are
marked and skipped with the reason; blocks that install into a fresh virtualenv are ``slow``.
The markers are described in ``docs_blocks.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from components import component_missing
from docs_blocks import ROOT, RUN, SHOWN, Block, all_blocks, blocks
from repo_copy import copy_of_repository

BLOCKS = all_blocks()
RUNNABLE = [b for b in BLOCKS if b.kind != "shown"]
BIN = str(Path(sys.executable).parent)


def environment(fresh: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if p and p != BIN]
    # A fresh-venv block starts from a shell without this test's virtualenv; the others find
    # this virtualenv's rtflow and python first, as after the README's install.
    env["PATH"] = os.pathsep.join(paths if fresh else [BIN, *paths])
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_PROGRESS_BAR"] = "off"
    env["RTFLOW_PROGRESS_INTERVAL"] = "5"
    return env


def needs(block: Block) -> None:
    for need in block.needs:
        if need == "java":
            if not (shutil.which("java") and shutil.which("mvn")):
                component_missing(f"{block.id} needs java and mvn for the Kafka broker's jars")
        elif need == "triton":
            from rtflow.gpu import triton_server as ts

            try:
                ts.locate_triton()
            except ts.TritonUnavailable as exc:
                component_missing(f"{block.id}: {exc}")
        else:
            raise AssertionError(f"{block.id}: unknown need {need!r}")


def _param(block: Block) -> object:
    marks = [pytest.mark.slow] if block.fresh_venv else []
    return pytest.param(block, id=block.id, marks=marks)


def test_every_block_is_run_or_declared_shown() -> None:
    """A block in a language this test does not know would silently never run."""
    assert BLOCKS, "no fenced blocks found"
    unknown = [f"{b.id} ({b.language or 'no language'})" for b in BLOCKS if b.kind == "shown"
               and b.language not in SHOWN]  # fmt: skip
    assert not unknown, f"fenced blocks in no known language: {unknown}"


def test_blocks_that_install_run_in_a_fresh_virtualenv() -> None:
    """Running ``pip install`` in this test's own virtualenv would replace the rtflow under
    test; such a block must be marked fresh-venv (or skipped, say, as the test command)."""
    wrong = [b.id for b in RUNNABLE if "pip install" in b.code and not b.fresh_venv and not b.skip]
    assert not wrong, wrong


def test_the_readme_test_command_is_where_ci_reads_it() -> None:
    """.ci/run takes the ```sh block right after ``<!-- test-command``: keep it there."""
    text = (ROOT / "README.md").read_text()
    after = text.split("<!-- test-command", 1)[1].split("\n", 1)[1]
    assert after.startswith("```sh\n")
    command = after.split("\n")[1]
    assert command.startswith("python -m venv .venv && . .venv/bin/activate && pip install -e")
    assert command.endswith("python -m pytest")


def test_blocks_that_cannot_run_here_say_why() -> None:
    """A block marked ``skip`` is not run: it needs what no test machine has (a cluster with
    Argo, Docker and a registry, a quiet machine for minutes, the test command itself). Those
    are not test cases that skip in CI; each must name its reason, and the rest all run."""
    not_run = {b.id: b.skip for b in RUNNABLE if b.skip}
    assert all(reason and reason.strip() for reason in not_run.values()), not_run
    assert len(not_run) < len(RUNNABLE) / 4, f"most blocks should run: {sorted(not_run)}"


@pytest.mark.parametrize("block", [_param(b) for b in RUNNABLE if not b.skip])
def test_block_runs_as_shown(block: Block, tmp_path: Path) -> None:
    needs(block)
    work = copy_of_repository(tmp_path / "repo")
    for earlier in blocks(block.page):  # what the page told the reader to save before this
        if earlier.line >= block.line:
            break
        if earlier.file:
            (work / earlier.file).write_text(earlier.code, encoding="utf-8")
    code = block.code
    if block.fresh_venv and "python -m venv" not in code:
        code = "python -m venv .venv && . .venv/bin/activate\n" + code
    if block.kind == "python":
        script = work / (block.file or "docs_block.py")
        script.write_text(code, encoding="utf-8")
        command = [sys.executable, script.name]
    else:
        assert RUN[block.language] == "sh"
        command = ["bash", "-euo", "pipefail", "-c", code]
    result = subprocess.run(
        command,
        cwd=work,
        env=environment(block.fresh_venv),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=1800 if block.fresh_venv else 600,
    )
    assert result.returncode == block.exit, (
        f"{block.id} exited {result.returncode}, not {block.exit}\n--- block\n{block.code}"
        f"--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"
    )
