"""Every deployable pipeline of the repository, and each of its folders as kustomize builds it
(what a cluster receives): shared by the tiers that check built overlays (the security
scanners, the real API server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from compiled import ROOT

from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.loader import load_pipelines

TESTS = ROOT / "tests"
# Files that hold no deployable pipeline on purpose: one the compiler must refuse.
NOT_DEPLOYABLE = {"bad_quantity.py"}
TARGETS = [
    ROOT / "examples/fraud_detection.py",
    ROOT / "examples/support_triage.py",
    ROOT / "examples/conversational_rag.py",
    ROOT / "examples/model_operations.py",
    *sorted(
        path
        for folder in ("pipelines", "local_pipelines", "stream_pipelines")
        for path in (TESTS / folder).glob("*.py")
        if "@rtflow.pipeline" in path.read_text() and path.name not in NOT_DEPLOYABLE
    ),
]


def built_documents(target: Path, out: Path) -> dict[str, list[dict[str, Any]]]:
    """Each deployable folder of the file's pipelines as kustomize builds it: its name (the
    pipeline, or pipeline/environment) -> the documents."""
    from rtflow.verify.kustomize import kustomize_build

    pipelines = [p.build() for p in load_pipelines(str(target))[1]]
    folders = {}
    for pipeline in pipelines:
        # Each pipeline as `rtflow compile FILE:PIPELINE` writes it (two pipelines of a file
        # may share a Triton server, which one folder would hold twice).
        write_folder(compile_pipelines([pipeline]), out / "src" / pipeline.name)
        root = out / "src" / pipeline.name / pipeline.name
        if pipeline.environments:
            for env in pipeline.environments:
                folders[f"{pipeline.name}/{env.name}"] = root / "overlays" / env.name
        else:
            folders[pipeline.name] = root
    return {name: kustomize_build(folder) for name, folder in folders.items()}


def built(target: Path, out: Path) -> dict[str, Path]:
    """As :func:`built_documents`, each folder's documents written to a YAML file."""
    result = {}
    for name, documents in built_documents(target, out).items():
        path = out / f"{name.replace('/', '-')}.yaml"
        path.write_text("".join(f"---\n{json.dumps(d)}\n" for d in documents))
        result[name] = path
    return result
