"""Local Triton servers' /dev/shm regions: an orphan's are swept, a live owner's and anything
not named by rtflow are kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rtflow.gpu.shm_regions import new_prefix, remove_regions, sweep_orphans


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_regions_of_a_dead_owner_are_swept_and_the_rest_kept(tmp_path: Path) -> None:
    dead = f"rtflow{_dead_pid()}_0badf00d_"
    mine = new_prefix()
    assert mine.startswith(f"rtflow{os.getpid()}_")
    names = [
        f"{dead}region-1",
        f"{dead}region-2",
        f"{mine}region-1",
        "PostgreSQL.12345",  # another program's
        "rtflowish",  # not a prefix rtflow writes
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"\0" * 16)
    assert sweep_orphans(tmp_path) == [f"{dead}region-1", f"{dead}region-2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[2:])


def test_a_stopped_server_s_regions_are_removed(tmp_path: Path) -> None:
    mine, other = new_prefix(), new_prefix()
    assert mine != other
    for name in (f"{mine}a", f"{mine}b", f"{other}a"):
        (tmp_path / name).touch()
    remove_regions(mine, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{other}a"]
    remove_regions("", tmp_path)  # no prefix: never everything
    assert [p.name for p in tmp_path.iterdir()] == [f"{other}a"]
