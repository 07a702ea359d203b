"""The Python backend's shared-memory regions of local Triton servers, and their clean-up.

Each Python-backend model instance talks to its stub process through a region in ``/dev/shm``.
A local server gets a prefix of its own, ``rtflow<owner pid>_<random>_``, so two servers on one
machine never share region names and a server's regions can be told apart from any other's.
A server stopped by :class:`~rtflow.gpu.triton_server.TritonServer` has its regions removed; a
server whose owner died without stopping it (a test process killed with SIGKILL, a laptop
closed mid-run) leaves them behind, a megabyte or more each, until reboot. The owner's pid in
the prefix is what makes those safe to find: a region whose owner is no longer alive belongs
to nobody, and is removed when the next server starts.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Final

__all__ = ["new_prefix", "remove_regions", "sweep_orphans"]

SHM: Final = Path("/dev/shm")
_OWNED: Final = re.compile(r"rtflow(\d+)_[0-9a-f]{8}_")


def new_prefix() -> str:
    """A region prefix for a server this process owns."""
    return f"rtflow{os.getpid()}_{secrets.token_hex(4)}_"


def remove_regions(prefix: str, shm: Path = SHM) -> None:
    """Remove every region of one server (it has stopped)."""
    if prefix and shm.is_dir():
        for region in shm.glob(f"{prefix}*"):
            with contextlib.suppress(OSError):
                region.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def sweep_orphans(shm: Path = SHM) -> list[str]:
    """Remove the regions whose owning process is gone; returns their names.

    A live owner's regions are kept even when its server is not running: a pid that was
    reused by an unrelated process only delays the sweep, never removes a region in use.
    """
    removed: list[str] = []
    if not shm.is_dir():
        return removed
    for region in sorted(shm.iterdir()):
        owned = _OWNED.match(region.name)
        if owned is None or _alive(int(owned.group(1))):
            continue
        with contextlib.suppress(OSError):
            region.unlink()
            removed.append(region.name)
    return removed
