"""Write Argo CD's own Application and ApplicationSet schemas as JSON Schema files.

The schemas are the ``openAPIV3Schema`` of the served version of Argo CD's CRDs
(``manifests/crds/application-crd.yaml`` and ``applicationset-crd.yaml``), read from the Argo CD
Go module at the release pinned below. The module comes through the Go module proxy into the Go
module cache (``go mod download``, which checks it against the checksum database); its hash
must also equal the one pinned here, so the schemas are exactly those of that release. Nothing
else is downloaded.

Output: ``<repo>/.tools/schemas/argo-cd-v3.2.0/{application,applicationset}.schema.json`` and
``provenance.json`` (where each schema came from), where ``rtflow.verify.argocd_schema`` finds
them. Idempotent: outputs that exist and are newer than this script are kept; ``--force``
rewrites them. Files are written whole (a scratch file renamed into place).

Usage: python tools/argocd_schemas.py [--force] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

MODULE = "github.com/argoproj/argo-cd/v3"
VERSION = "v3.2.0"
# `go mod download -json` "Sum" of MODULE@VERSION (the go.sum line of the module zip).
MODULE_SUM = "h1:m2eGAV+nXQGgzZbH5SyJD5laaPW27mzWXBrgisUHY/0="
# CRD file in the module -> (kind, schema file written).
CRDS = {
    "manifests/crds/application-crd.yaml": ("Application", "application.schema.json"),
    "manifests/crds/applicationset-crd.yaml": ("ApplicationSet", "applicationset.schema.json"),
}
GROUP = "argoproj.io"
# OpenAPI 3.0's Schema Object is JSON Schema draft Wright-00 (draft 4/5) with extensions; the
# keywords the CRDs use (type, properties, items, required, additionalProperties, anyOf, enum,
# format, pattern, minLength) mean the same in draft 4, and the x-kubernetes-* ones are ignored.
DRAFT = "http://json-schema.org/draft-04/schema#"

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / ".tools" / "schemas" / f"argo-cd-{VERSION}"
PROVENANCE = "provenance.json"


class ProvisionError(Exception):
    """Something that stops the schemas being written; the message says what."""


def find_go() -> str:
    found = shutil.which("go")
    if found:
        return found
    if os.access("/usr/local/go/bin/go", os.X_OK):
        return "/usr/local/go/bin/go"
    raise ProvisionError("go not found on PATH nor at /usr/local/go/bin/go")


def module_dir() -> Path:
    """MODULE@VERSION in the Go module cache, downloaded through the proxy when missing."""
    # Outside any module (a scratch working folder), so no go.mod or go.work applies.
    with tempfile.TemporaryDirectory() as scratch:
        proc = subprocess.run(
            [find_go(), "mod", "download", "-json", f"{MODULE}@{VERSION}"],
            cwd=scratch,
            env={**os.environ, "GOWORK": "off", "GOFLAGS": ""},
            capture_output=True,
            text=True,
            check=False,
        )
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        info = {}
    if proc.returncode != 0 or "Error" in info or "Dir" not in info:
        detail = info.get("Error") or proc.stderr.strip() or f"exit status {proc.returncode}"
        raise ProvisionError(f"go mod download {MODULE}@{VERSION} failed: {detail}")
    if info.get("Sum") != MODULE_SUM:
        raise ProvisionError(
            f"{MODULE}@{VERSION} has hash {info.get('Sum')}, but {MODULE_SUM} is pinned"
        )
    return Path(info["Dir"])


def served_schema(crd_path: Path, kind: str) -> tuple[str, dict[str, Any]]:
    """(version name, openAPIV3Schema) of the one served version of the CRD for ``kind``."""
    documents = [d for d in yaml.safe_load_all(crd_path.read_text(encoding="utf-8")) if d]
    crds = [
        d
        for d in documents
        if d.get("kind") == "CustomResourceDefinition"
        and d["spec"]["group"] == GROUP
        and d["spec"]["names"]["kind"] == kind
    ]
    if len(crds) != 1:
        raise ProvisionError(f"{crd_path}: expected one CRD for {GROUP} {kind}, found {len(crds)}")
    served = [v for v in crds[0]["spec"]["versions"] if v.get("served")]
    if len(served) != 1:
        names = [v.get("name") for v in served]
        raise ProvisionError(f"{crd_path}: expected one served version of {kind}, found {names}")
    version = served[0]
    schema = version.get("schema", {}).get("openAPIV3Schema")
    if not isinstance(schema, dict):
        raise ProvisionError(f"{crd_path}: {kind} {version['name']} has no openAPIV3Schema")
    return str(version["name"]), schema


def write_whole(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(scratch, 0o644)  # mkstemp's 0600 would hide the schemas from other users
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise


def up_to_date(out: Path) -> bool:
    outputs = [out / name for _, name in CRDS.values()] + [out / PROVENANCE]
    script = Path(__file__).stat().st_mtime
    return all(p.is_file() and p.stat().st_mtime > script for p in outputs)


def provision(out: Path, *, force: bool = False) -> str:
    if not force and up_to_date(out):
        return f"up to date in {out}"
    source = module_dir()
    provenance: dict[str, Any] = {"module": MODULE, "version": VERSION, "sum": MODULE_SUM}
    kinds: dict[str, Any] = {}
    for crd_file, (kind, schema_file) in CRDS.items():
        api_version, schema = served_schema(source / crd_file, kind)
        document = {
            "$schema": DRAFT,
            "$comment": (
                f"openAPIV3Schema of {GROUP}/{api_version} {kind}, from {MODULE}@{VERSION} "
                f"{crd_file}; written by tools/argocd_schemas.py"
            ),
            **schema,
        }
        write_whole(out / schema_file, json.dumps(document, indent=1, sort_keys=True) + "\n")
        kinds[kind] = {"apiVersion": f"{GROUP}/{api_version}", "crd": crd_file, "file": schema_file}
    provenance["kinds"] = kinds
    # Written last: its presence (newer than this script) marks a complete set.
    write_whole(out / PROVENANCE, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return f"wrote {', '.join(sorted(kinds))} schemas to {out}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rewrite even when up to date")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default: {DEFAULT_OUT}")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        said = provision(args.out, force=args.force)
    except ProvisionError as error:
        print(f"argocd-schemas: {error}", file=sys.stderr)
        return 1
    print(f"argocd-schemas ({MODULE}@{VERSION}): {said} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
