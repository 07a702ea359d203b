"""Run mypy over the ``rtflow`` package as it is installed: folders mapped into one namespace.

mypy names modules after their folders, and sdk/, generators/, gpu/ and stages/ only become
``rtflow``, ``rtflow.generators``, ... through pyproject's package-dir mapping. This builds that
tree from symlinks under build/typecheck and checks it, plus the examples, benchmarks and
e2e/cluster.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPING = {
    "rtflow": "sdk",
    "rtflow/generators": "generators",
    "rtflow/gpu": "gpu",
    "rtflow/stages": "stages",
}


def build_tree() -> Path:
    tree = ROOT / "build" / "typecheck"
    shutil.rmtree(tree, ignore_errors=True)
    for package, folder in MAPPING.items():
        target = tree / package
        target.mkdir(parents=True, exist_ok=True)
        for source in (ROOT / folder).rglob("*"):
            if "__pycache__" in source.parts or source.is_dir():
                continue
            if source.suffix not in {".py", ".typed"}:
                continue
            relative = source.relative_to(ROOT / folder)
            link = target / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
    return tree


def main() -> int:
    tree = build_tree()
    extra = [str(p) for p in (ROOT / "examples", ROOT / "benchmarks") if any(p.glob("*.py"))]
    # What the e2e cluster holds (its test module needs pytest-kind, which CI does not install).
    extra.append(str(ROOT / "e2e" / "cluster.py"))
    config = str(ROOT / "pyproject.toml")
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        config,
        "--explicit-package-bases",
        str(tree / "rtflow"),
        *extra,
    ]
    # Examples import their neighbours as the loader does (the example's folder on sys.path).
    env = {**os.environ, "MYPYPATH": str(ROOT / "examples")}
    return subprocess.call(command, cwd=tree, env=env)


if __name__ == "__main__":
    sys.exit(main())
