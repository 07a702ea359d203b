"""Write the upstream CRD schemas rtflow checks objects against, as JSON Schema files.

Each schema is the ``openAPIV3Schema`` of the one served version of an upstream
CustomResourceDefinition, at a pinned release, taken from the registry that serves that release:

* Go modules (Argo CD, KEDA, prometheus-operator): ``go mod download`` brings the module through
  the Go module proxy into the module cache, checked against the checksum database; its hash
  (the ``Sum`` of ``go mod download -json``) must also equal the one pinned here. The CRD is a
  YAML file in the module.
* Strimzi is Java and publishes no CRD file in a registry: its build generates the CRDs from the
  model classes of ``io.strimzi:api`` with ``io.strimzi:crd-generator`` (a self-contained jar).
  Both jars come from Maven Central (``mvn -C``: the download must match Central's checksum) and
  must match the SHA-1 and SHA-256 pinned here; the generator then writes the CRD the way
  Strimzi's build does, and the schema is read from it. The jars are compiled for Java 21, so a
  Java 21 or newer runs the generator (found on PATH, in ``$JAVA_HOME`` or under /usr/lib/jvm).

Nothing else is downloaded and nothing is committed.

Output: ``<repo>/.tools/schemas/<project>-<version>/<kind>.schema.json`` (kind in lower case;
the schemas folder is ``$RTFLOW_CRD_SCHEMAS``, or ``$RTFLOW_TOOLS/schemas``, when set) and
``provenance.json`` (the pins, and where each schema came from), where
``rtflow.verify.crd_schema`` finds them. Idempotent and quick: a folder whose provenance names
the pins below is kept (``--force`` rewrites it). Files are written whole (a scratch file renamed
into place); provenance.json is written last, so it marks a complete folder.

Exit status: 0 done, 1 failed, 3 a toolchain is missing (go, or java 21+ and mvn), so that
tools/provision.sh can skip that part on a laptop and fail under CI=true.

Usage: python tools/crd_schemas.py [--toolchain go|java] [--only NAME] [--force] [--root DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# A sibling module: this file runs as a script (and tests load it from its path).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from go_module import GoModuleError, pinned_module_dir

ROOT = Path(__file__).resolve().parents[1]
# Where rtflow.verify.crd_schema looks: $RTFLOW_CRD_SCHEMAS, else the tools folder's schemas/
# ($RTFLOW_TOOLS, else <repo>/.tools; rtflow.verify.tools_home).
DEFAULT_ROOT = (
    Path(os.environ["RTFLOW_CRD_SCHEMAS"])
    if os.environ.get("RTFLOW_CRD_SCHEMAS")
    else Path(os.environ.get("RTFLOW_TOOLS") or ROOT / ".tools") / "schemas"
)
PROVENANCE = "provenance.json"
# Bump when what is written for the same pins changes: older folders are then rewritten.
FORMAT = 3  # 3: the CRD itself beside its schema (<kind>.crd.yaml)
# OpenAPI 3.0's Schema Object is JSON Schema draft Wright-00 (draft 4/5) with extensions; the
# keywords the CRDs use (type, properties, items, required, additionalProperties, anyOf, enum,
# format, pattern, minimum, minLength, ...) mean the same in draft 4, and the x-kubernetes-*
# ones are ignored by a JSON Schema validator (rtflow.verify.crd_schema gives them meaning).
DRAFT = "http://json-schema.org/draft-04/schema#"
EXIT_TOOLCHAIN_MISSING = 3


class ProvisionError(Exception):
    """Something that stops the schemas being written; the message says what."""


class ToolchainMissing(ProvisionError):
    """go, or a java new enough and mvn, is not installed."""


@dataclass(frozen=True)
class GoModule:
    """CRD files in a Go module: kind -> path of its CRD YAML in the module."""

    name: str
    module: str
    version: str
    sum: str  # `go mod download -json` "Sum" (the go.sum line of the module zip)
    group: str
    crds: Mapping[str, str]
    toolchain = "go"

    def pins(self) -> dict[str, Any]:
        return {
            "type": "go-module",
            "module": self.module,
            "version": self.version,
            "sum": self.sum,
        }


@dataclass(frozen=True)
class MavenArtifact:
    group_id: str
    artifact_id: str
    version: str
    sha1: str  # as Maven Central publishes it (<artifact>.jar.sha1)
    sha256: str

    @property
    def coordinates(self) -> str:
        return f"{self.group_id}:{self.artifact_id}:{self.version}"

    def pins(self) -> dict[str, str]:
        return {"coordinates": self.coordinates, "sha1": self.sha1, "sha256": self.sha256}


@dataclass(frozen=True)
class MavenGenerated:
    """CRDs a Java generator writes from model classes: kind -> the class it is generated from."""

    name: str
    version: str
    group: str
    artifacts: tuple[MavenArtifact, ...]  # the classpath, in order
    main_class: str
    arguments: tuple[str, ...]  # before the class=file pairs
    crds: Mapping[str, str]
    java_release: int  # the class files' Java release: the oldest java that runs them
    toolchain = "java"

    def pins(self) -> dict[str, Any]:
        return {
            "type": "maven-generated",
            "artifacts": [a.pins() for a in self.artifacts],
            "main": self.main_class,
            "arguments": list(self.arguments),
            "classes": dict(self.crds),
        }


Source = GoModule | MavenGenerated

SOURCES: tuple[Source, ...] = (
    GoModule(
        name="argo-cd",
        module="github.com/argoproj/argo-cd/v3",
        version="v3.2.0",
        sum="h1:m2eGAV+nXQGgzZbH5SyJD5laaPW27mzWXBrgisUHY/0=",
        group="argoproj.io",
        crds={
            "Application": "manifests/crds/application-crd.yaml",
            "ApplicationSet": "manifests/crds/applicationset-crd.yaml",
        },
    ),
    GoModule(
        name="keda",
        module="github.com/kedacore/keda/v2",
        version="v2.21.0",
        sum="h1:R6z2HZvstK4RLUMxroNACzBj74xGxt3kG59b5Xc+Xps=",
        group="keda.sh",
        crds={
            "ScaledObject": "config/crd/bases/keda.sh_scaledobjects.yaml",
            "TriggerAuthentication": "config/crd/bases/keda.sh_triggerauthentications.yaml",
        },
    ),
    GoModule(
        name="prometheus-operator",
        # v0.85.0 is the newest release the Go module proxy serves for this module path.
        module="github.com/prometheus-operator/prometheus-operator",
        version="v0.85.0",
        sum="h1:M5xLCLEoaW2IJfnuCwFzzpL+jSVQu3KGT84Pye+fW8s=",
        group="monitoring.coreos.com",
        crds={
            kind: f"example/prometheus-operator-crd/monitoring.coreos.com_{plural}.yaml"
            for kind, plural in (
                ("PodMonitor", "podmonitors"),
                ("ServiceMonitor", "servicemonitors"),
                ("PrometheusRule", "prometheusrules"),
            )
        },
    ),
    MavenGenerated(
        name="strimzi",
        version="1.2.0",
        group="kafka.strimzi.io",
        artifacts=(
            # Self-contained (shaded with fabric8 7.8.0, Jackson, SnakeYAML, log4j): the same
            # fabric8 release io.strimzi:api 1.2.0 is built against, so nothing else is needed.
            MavenArtifact(
                "io.strimzi",
                "crd-generator",
                "1.2.0",
                sha1="e647cc3c39a1a02cc0811cb066a3bea7e588fa85",
                sha256="76bb2430e702a1e6a24c071d26c865d5e9572cbc630d176d3b912033ae23ed00",
            ),
            MavenArtifact(
                "io.strimzi",
                "api",
                "1.2.0",
                sha1="f436c16dafd84ef5a8c26a35d7bb79f9433db551",
                sha256="566961ae5e5646a001ae91312beda5cba3a5d467e740e205e1b761754335fe4e",
            ),
        ),
        main_class="io.strimzi.crdgenerator.CrdGenerator",
        # KafkaTopic's @Crd annotation in 1.2.0 declares one version, v1, served and storage.
        arguments=(
            "--yaml",
            "--crd-api-version",
            "v1",
            "--api-versions",
            "v1",
            "--storage-version",
            "v1",
        ),
        crds={"KafkaTopic": "io.strimzi.api.kafka.model.topic.KafkaTopic"},
        java_release=21,
    ),
)
MAVEN_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"


def folder_name(source: Source) -> str:
    return f"{source.name}-{source.version}"


def crd_file(kind: str) -> str:
    return f"{kind.lower()}.crd.yaml"


def schema_file(kind: str) -> str:
    return f"{kind.lower()}.schema.json"


# toolchains


def _tool(name: str, fallback: str | None = None) -> str:
    found = shutil.which(name)
    if found:
        return found
    if fallback and os.access(fallback, os.X_OK):
        return fallback
    where = f" nor at {fallback}" if fallback else ""
    raise ToolchainMissing(f"{name} not found on PATH{where}")


def java_release(java: str) -> int:
    """The feature release of a java (8 for 1.8, 25 for 25.0.3), 0 when it does not run."""
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return 0
    found = re.search(r'version "(\d+)(?:\.(\d+))?', proc.stderr + proc.stdout)
    if not found:
        return 0
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def find_java(minimum: int) -> tuple[str, int]:
    """A java of release ``minimum`` or newer: on PATH, in $JAVA_HOME, else the newest JVM
    under /usr/lib/jvm."""
    candidates = [shutil.which("java")]
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    candidates += [str(p) for p in sorted(Path("/usr/lib/jvm").glob("*/bin/java"))]
    seen: dict[str, int] = {}
    for candidate in candidates:
        if candidate and candidate not in seen and os.access(candidate, os.X_OK):
            seen[candidate] = java_release(candidate)
    fit = [(release, java) for java, release in seen.items() if release >= minimum]
    if not fit:
        found = ", ".join(f"{j} ({r})" for j, r in seen.items()) or "none"
        raise ToolchainMissing(f"a java {minimum} or newer is needed; found: {found}")
    release, java = max(fit)
    return java, release


# reading CRDs


def served_schema(text: str, group: str, kind: str, where: str) -> tuple[str, dict[str, Any]]:
    """(version name, openAPIV3Schema) of the one served version of the CRD for ``kind``."""
    documents = [d for d in yaml.safe_load_all(text) if d]
    crds = [
        d
        for d in documents
        if d.get("kind") == "CustomResourceDefinition"
        and d["spec"]["group"] == group
        and d["spec"]["names"]["kind"] == kind
    ]
    if len(crds) != 1:
        raise ProvisionError(f"{where}: expected one CRD for {group} {kind}, found {len(crds)}")
    served = [v for v in crds[0]["spec"]["versions"] if v.get("served")]
    if len(served) != 1:
        names = [v.get("name") for v in served]
        raise ProvisionError(f"{where}: expected one served version of {kind}, found {names}")
    version = served[0]
    schema = version.get("schema", {}).get("openAPIV3Schema")
    if not isinstance(schema, dict):
        raise ProvisionError(f"{where}: {kind} {version['name']} has no openAPIV3Schema")
    return str(version["name"]), schema


def go_module_crds(source: GoModule) -> Iterator[tuple[str, str, str]]:
    """(kind, CRD text, where it came from) of each CRD, from the module in the module cache."""
    go = _tool("go", "/usr/local/go/bin/go")
    module = f"{source.module}@{source.version}"
    try:
        folder = pinned_module_dir(go, source.module, source.version, source.sum)
    except GoModuleError as exc:
        raise ProvisionError(str(exc)) from exc
    for kind, crd_file in source.crds.items():
        path = folder / crd_file
        yield kind, path.read_text(encoding="utf-8"), f"{module} {crd_file}"


def _digest(path: Path, algorithm: str) -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def maven_generated_crds(source: MavenGenerated) -> Iterator[tuple[str, str, str]]:
    """(kind, CRD text, where it came from) of each CRD, written by the pinned generator."""
    java, release = find_java(source.java_release)
    mvn = _tool("mvn")
    with tempfile.TemporaryDirectory(prefix="rtflow-crd-") as scratch:
        jars = Path(scratch) / "jars"
        classpath = []
        for artifact in source.artifacts:
            # -C: the download must match Maven Central's checksum; no project is needed.
            proc = subprocess.run(
                [
                    mvn,
                    "-q",
                    "-B",
                    "-C",
                    f"{MAVEN_DEPENDENCY_PLUGIN}:copy",
                    f"-Dartifact={artifact.coordinates}",
                    f"-DoutputDirectory={jars}",
                ],
                cwd=scratch,
                capture_output=True,
                text=True,
                check=False,
            )
            jar = jars / f"{artifact.artifact_id}-{artifact.version}.jar"
            if proc.returncode != 0 or not jar.is_file():
                detail = (proc.stdout + proc.stderr).strip()[-2000:]
                raise ProvisionError(f"mvn could not fetch {artifact.coordinates}: {detail}")
            for algorithm, pinned in (("sha1", artifact.sha1), ("sha256", artifact.sha256)):
                actual = _digest(jar, algorithm)
                if actual != pinned:
                    raise ProvisionError(
                        f"{artifact.coordinates} has {algorithm} {actual}, but {pinned} is pinned"
                    )
            classpath.append(str(jar))
        outputs = {kind: Path(scratch) / f"{kind.lower()}-crd.yaml" for kind in source.crds}
        pairs = [f"{cls}={outputs[kind]}" for kind, cls in source.crds.items()]
        proc = subprocess.run(
            [java, "-cp", os.pathsep.join(classpath), source.main_class, *source.arguments, *pairs],
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0 or not all(p.is_file() for p in outputs.values()):
            detail = (proc.stdout + proc.stderr).strip()[-2000:]
            raise ProvisionError(f"{source.main_class} (java {release}) failed: {detail}")
        origin = " + ".join(a.coordinates for a in source.artifacts)
        for kind, path in outputs.items():
            where = f"{origin}: {source.main_class} {source.crds[kind]} (java {release})"
            yield kind, path.read_text(encoding="utf-8"), where


# writing


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


def up_to_date(source: Source, out: Path) -> bool:
    """The folder holds every schema and a provenance naming these very pins."""
    try:
        provenance = json.loads((out / PROVENANCE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(provenance, dict)
        and provenance.get("format") == FORMAT
        and provenance.get("source") == source.pins()
        and all((out / schema_file(kind)).is_file() for kind in source.crds)
        and all((out / crd_file(kind)).is_file() for kind in source.crds)
    )


def provision(source: Source, root: Path, *, force: bool = False) -> str:
    out = root / folder_name(source)
    if not force and up_to_date(source, out):
        return f"up to date in {out}"
    crds = go_module_crds(source) if isinstance(source, GoModule) else maven_generated_crds(source)
    kinds: dict[str, Any] = {}
    for kind, text, where in crds:
        version, schema = served_schema(text, source.group, kind, where)
        api_version = f"{source.group}/{version}"
        document = {
            "$schema": DRAFT,
            "$comment": (
                f"openAPIV3Schema of {api_version} {kind}, from {where}; "
                "written by tools/crd_schemas.py"
            ),
            **schema,
        }
        name = schema_file(kind)
        write_whole(out / name, json.dumps(document, indent=1, sort_keys=True) + "\n")
        # The CRD itself too, for a real API server to install (rtflow.testing.control_plane).
        write_whole(out / crd_file(kind), text)
        kinds[kind] = {"apiVersion": api_version, "from": where, "file": name}
    provenance = {"format": FORMAT, "source": source.pins(), "kinds": kinds}
    # Written last: its presence, naming these pins, marks a complete folder.
    write_whole(out / PROVENANCE, json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return f"wrote {', '.join(sorted(kinds))} to {out}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--toolchain", choices=("go", "java"), help="only the sources that need this toolchain"
    )
    parser.add_argument(
        "--only", action="append", choices=[s.name for s in SOURCES], help="only this source"
    )
    parser.add_argument("--force", action="store_true", help="rewrite even when up to date")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"default: {DEFAULT_ROOT}")
    args = parser.parse_args(argv)
    status = 0
    for source in SOURCES:
        if args.toolchain and source.toolchain != args.toolchain:
            continue
        if args.only and source.name not in args.only:
            continue
        start = time.monotonic()
        label = f"crd-schemas {folder_name(source)}"
        try:
            said = provision(source, args.root, force=args.force)
        except ToolchainMissing as error:
            print(f"{label}: {error}", file=sys.stderr)
            status = status or EXIT_TOOLCHAIN_MISSING
            continue
        except ProvisionError as error:
            print(f"{label}: {error}", file=sys.stderr)
            status = 1
            continue
        print(f"{label}: {said} ({time.monotonic() - start:.1f} s)")
    return status


if __name__ == "__main__":
    sys.exit(main())
