"""One pinned Go module, brought into the module cache: the shared step of the tools that take
upstream schemas and CRDs from Go modules (argo_schemas.py, crd_schemas.py).

``go mod download`` fetches through the Go module proxy and checks the checksum database; the
module's hash (the ``Sum`` of ``go mod download -json``, a go.sum line) must also equal the one
pinned by the caller, so a re-tagged release cannot slip in.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path


class GoModuleError(RuntimeError):
    """The module could not be downloaded, or its hash is not the pinned one."""


def pinned_module_dir(go: str, module: str, version: str, pinned_sum: str) -> Path:
    """The module's folder in the module cache, downloaded if need be and checked."""
    with tempfile.TemporaryDirectory() as scratch:
        # Outside any module (a scratch working folder), so no go.mod or go.work applies.
        done = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            cwd=scratch,
            env={**os.environ, "GOWORK": "off", "GOFLAGS": ""},
            check=False,
        )
    try:
        info = json.loads(done.stdout)
    except json.JSONDecodeError:
        info = {}
    where = f"{module}@{version}"
    if done.returncode != 0 or "Error" in info or "Dir" not in info:
        detail = info.get("Error") or done.stderr.strip() or f"exit status {done.returncode}"
        raise GoModuleError(f"go mod download {where} failed: {detail}")
    if info.get("Sum") != pinned_sum:
        raise GoModuleError(f"{where} has hash {info.get('Sum')}, but {pinned_sum} is pinned")
    return Path(info["Dir"])
