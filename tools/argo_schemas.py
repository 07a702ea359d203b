"""Copy the upstream Argo Workflows and Argo Events JSON schemas out of their Go modules.

``rtflow lint`` checks Argo Events objects (EventSource, Sensor, EventBus) against
``api/jsonschema/schema.json`` of the Argo Events release the project pins, strictly
(rtflow.verify.events_schema); the strict schema tests (tests/strict_schema.py) validate every
generated object against it and against the Argo Workflows one. The versions are those the Argo
linters are built from (tools/argo-lint/go.mod, tools/argo-events-lint/go.mod), and
``go mod download`` brings each module through the Go module proxy into the module cache,
checked against the checksum database; its hash (the ``Sum`` of ``go mod download -json``, the
go.sum line of the linters' modules) must also equal the one pinned here. Nothing else is
downloaded and nothing is committed.

Output: ``<tools>/schemas/argo-workflows-<v>.schema.json`` and ``argo-events-<v>.schema.json``,
where ``<tools>`` is ``$RTFLOW_TOOLS`` when set, else ``<repo>/.tools`` (``--root`` names the
schemas folder itself): where rtflow.verify.tools_home finds them. Idempotent: a file that is
there and parses is kept (``--force`` rewrites it); a file is written whole (a scratch file
renamed into place).

Usage: python tools/argo_schemas.py [--force] [--root DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

# A sibling module: this file runs as a script (and tests load it from its path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from go_module import GoModuleError, pinned_module_dir

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Schema:
    module: str
    version: str
    sum: str  # `go mod download -json` "Sum", as in the linters' go.sum
    file: str  # written as
    crds: str  # the module's folder of CRD manifests, copied to <root>/crds/<file stem>/

    @property
    def crd_folder(self) -> str:
        return self.file.removesuffix(".schema.json")


# Keep in step with tools/argo-lint/go.mod, tools/argo-events-lint/go.mod and
# rtflow.verify.events_schema (tests/test_lint_events.py compares them).
SCHEMAS = (
    Schema(
        "github.com/argoproj/argo-workflows/v4",
        "v4.1.4",
        "h1:/+7ZnKumIwBmS6z+3zeWvTnhW8c6nun0dLrtcBBRz0A=",
        "argo-workflows-v4.1.4.schema.json",
        "manifests/base/crds/full",
    ),
    Schema(
        "github.com/argoproj/argo-events",
        "v1.9.11",
        "h1:lDRu5E8ReFN1RJxGIibNOHuNEIPwzGleEkP3DZDNN2s=",
        "argo-events-v1.9.11.schema.json",
        "manifests/base/crds",
    ),
)


def default_root() -> Path:
    tools = os.environ.get("RTFLOW_TOOLS")
    return (Path(tools) if tools else ROOT / ".tools") / "schemas"


def _parses(path: Path) -> bool:
    try:
        return isinstance(json.loads(path.read_text(encoding="utf-8")).get("definitions"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def write(schema: Schema, out: Path, go: str) -> str:
    module = f"{schema.module}@{schema.version}"
    try:
        folder = pinned_module_dir(go, schema.module, schema.version, schema.sum)
    except GoModuleError as exc:
        raise RuntimeError(str(exc)) from exc
    _copy_crds(folder / schema.crds, out / "crds" / schema.crd_folder)
    source = folder / "api" / "jsonschema" / "schema.json"
    target = out / schema.file
    out.mkdir(parents=True, exist_ok=True)
    fd, scratch_file = tempfile.mkstemp(dir=out, prefix=f".{schema.file}.")
    os.close(fd)
    try:
        shutil.copyfile(source, scratch_file)
        os.chmod(scratch_file, 0o644)
        if not _parses(Path(scratch_file)):
            raise RuntimeError(f"{module}: {source} is not a JSON schema with definitions")
        os.replace(scratch_file, target)
    finally:
        Path(scratch_file).unlink(missing_ok=True)
    return f"wrote {target} from {module}"


def _copy_crds(source: Path, target: Path) -> None:
    """The CustomResourceDefinitions themselves, for a real API server to install
    (rtflow.testing.control_plane); a folder written whole, so a partial copy never stays."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        for crd in sorted(source.glob("argoproj.io_*.yaml")):
            shutil.copyfile(crd, scratch / crd.name)
            os.chmod(scratch / crd.name, 0o644)
        if not any(scratch.iterdir()):
            raise RuntimeError(f"no argoproj.io_*.yaml CRD in {source}")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(scratch, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _complete(out: Path, schema: Schema) -> bool:
    return _parses(out / schema.file) and any((out / "crds" / schema.crd_folder).glob("*.yaml"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rewrite even when present")
    parser.add_argument("--root", type=Path, default=None, help="the schemas folder")
    args = parser.parse_args(argv)
    out = args.root or default_root()
    go = shutil.which("go") or "/usr/local/go/bin/go"
    status = 0
    for schema in SCHEMAS:
        if not args.force and _complete(out, schema):
            print(f"argo-schemas: {schema.file} up to date in {out}")
            continue
        try:
            print(f"argo-schemas: {write(schema, out, go)}")
        except (OSError, RuntimeError) as error:
            print(f"argo-schemas: {error}", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
