"""Dockerfiles for stage images, rendered with jinja2 from ``stages/templates``.

Two layers: the Python-function base image (the stage runtime, non-root UID 65532, made for a
read-only root filesystem) and, on top, a user's stage package (``rtflow stage-dockerfile``).
The built-in stages are base images with their extra requirements.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePosixPath

import jinja2

from rtflow.stages import contract

UID = 65532
DEFAULT_PYTHON_IMAGE = "python:3.11-slim-bookworm"
DEFAULT_BASE_IMAGE = "ghcr.io/rtflow/python-function:0.1.0"
BUILTIN_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "python-function": (),
    "kafka-publish": ("confluent-kafka>=2.16,<3",),
    "http-callback": (),
    # rtflow.infer(..., via="grpc"): the gRPC client stage (numpy<2: tritonclient's pin).
    "triton-client": ("tritonclient[grpc]>=2.50", "numpy>=1.21,<2"),
    # rtflow.retrieve, rtflow.history, rtflow.remember: PostgreSQL (pgvector) through psycopg.
    "retrieval": ("psycopg[binary]>=3.2,<4",),
    # rtflow.canary_rollout's stages: the rollout state topic (Triton is called over HTTP).
    "canary": ("confluent-kafka>=2.16,<3",),
}

# The stream plane's worker base: the runtime with rtflow's [stream] extra (librdkafka, gRPC
# Triton client, Prometheus client), read from the installed rtflow's metadata so the image and
# `pip install 'rtflow[stream]'` cannot disagree. A user's stream image is a stage image on it.
STREAM_WORKER = "stream-worker"
DEFAULT_STREAM_BASE_IMAGE = "ghcr.io/rtflow/stream-worker:0.1.0"


def stream_requirements() -> tuple[str, ...]:
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    found = []
    for line in requires("rtflow") or []:
        requirement = Requirement(line)
        if requirement.marker is not None and requirement.marker.evaluate({"extra": "stream"}):
            requirement.marker = None
            found.append(str(requirement))
    if not found:
        raise ValueError("the installed rtflow declares no [stream] extra")
    return tuple(sorted(found))


_env = jinja2.Environment(
    loader=jinja2.PackageLoader("rtflow.stages", "templates"),
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    undefined=jinja2.StrictUndefined,
)


def render_base_dockerfile(
    *,
    rtflow_requirement: str = "rtflow",
    builtin: str = "python-function",
    python_image: str = DEFAULT_PYTHON_IMAGE,
    find_links: str | None = None,
) -> str:
    """The base image's Dockerfile (``builtin`` adds that built-in stage's requirements;
    ``find_links``, a folder of wheels in the build context, is searched before the index)."""
    if builtin == STREAM_WORKER:
        extra = stream_requirements()
    elif builtin in BUILTIN_REQUIREMENTS:
        extra = BUILTIN_REQUIREMENTS[builtin]
    else:
        known = ", ".join([*BUILTIN_REQUIREMENTS, STREAM_WORKER])
        raise ValueError(f"no built-in stage {builtin!r}: {known}")
    return _env.get_template("base.Dockerfile.j2").render(
        python_image=python_image,
        find_links=find_links,
        rtflow_requirement=rtflow_requirement,
        extra_requirements=extra,
        uid=UID,
        scratch_dir=contract.SCRATCH_DIR,
        command=contract.COMMAND,
    )


def render_stage_dockerfile(
    source: str | Sequence[str],
    *,
    requirements: str | None = None,
    base_image: str = DEFAULT_BASE_IMAGE,
) -> str:
    """The Dockerfile of a user's stage code: ``source`` is a module file or package folder
    relative to the build context (say ``fraud_detection.py`` or ``src/fraud``), or several (the
    module and the packages it imports); each is copied to ``/app/<its name>`` so that
    ``MODULE:FUNCTION`` imports as it does on the developer's machine. ``requirements`` is a
    requirements file in the context, if any."""
    sources = [source] if isinstance(source, str) else list(source)
    if not sources:
        raise ValueError("give at least one module file or package folder")
    paths = [PurePosixPath(s) for s in sources]
    for path, given in zip(paths, sources, strict=True):
        if path.is_absolute() or ".." in path.parts or not path.name:
            raise ValueError(f"{given!r} must be a relative path inside the build context")
    names = [path.name for path in paths]
    if len(set(names)) != len(names):
        raise ValueError(f"two sources have the same name ({', '.join(sorted(names))})")
    if requirements is not None:
        req = PurePosixPath(requirements)
        if req.is_absolute() or ".." in req.parts:
            raise ValueError(f"{requirements!r} must be a relative path inside the build context")
    return _env.get_template("stage.Dockerfile.j2").render(
        package=paths[0].stem,
        base_image=base_image,
        requirements=requirements,
        copies=[(str(path), path.name) for path in paths],
        uid=UID,
    )
