"""Copy the upstream Argo Workflows and Argo Events JSON schemas out of their Go modules.

The strict schema tests validate every generated object against ``api/jsonschema/schema.json``
of the Argo Workflows and Argo Events releases the project pins (the same module versions the
Argo linters are built from, tools/build-go-tools.sh). ``go mod download`` brings each module
through the Go module proxy into the module cache, checked against the checksum database;
nothing else is downloaded and nothing is committed.

Output: ``<repo>/.tools/schemas/argo-workflows-<v>.schema.json`` and
``argo-events-<v>.schema.json``, where tests/strict_schema.py finds them. Idempotent.

Usage: python tools/argo_schemas.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".tools" / "schemas"
# module, version, file written: keep in step with tools/build-go-tools.sh and
# tests/strict_schema.py.
SCHEMAS = (
    ("github.com/argoproj/argo-workflows/v4", "v4.1.4", "argo-workflows-v4.1.4.schema.json"),
    ("github.com/argoproj/argo-events", "v1.9.11", "argo-events-v1.9.11.schema.json"),
)


def main() -> int:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    OUT.mkdir(parents=True, exist_ok=True)
    for module, version, name in SCHEMAS:
        target = OUT / name
        if target.exists():
            continue
        done = subprocess.run(
            [go, "mod", "download", "-json", f"{module}@{version}"],
            capture_output=True,
            text=True,
            cwd=OUT,
            env={**os.environ, "GOFLAGS": "-mod=mod", "GO111MODULE": "on"},
        )
        if done.returncode != 0:
            print(f"argo-schemas: {module}@{version}: {done.stdout}{done.stderr}", file=sys.stderr)
            return 1
        source = Path(json.loads(done.stdout)["Dir"]) / "api" / "jsonschema" / "schema.json"
        scratch = target.with_suffix(".tmp")
        shutil.copyfile(source, scratch)
        json.loads(scratch.read_text(encoding="utf-8"))  # a whole JSON document, or fail here
        scratch.replace(target)
        print(f"argo-schemas: wrote {target.relative_to(ROOT)} from {module}@{version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
