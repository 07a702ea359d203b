"""Helpers the unit and golden tests share: compile a pipeline and read the YAML back."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

import rtflow
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import render_stream

ROOT = Path(__file__).resolve().parents[1]
PIPELINES = Path(__file__).resolve().parent / "pipelines"


def compile_docs(*pipelines: rtflow.Pipeline) -> list[dict[str, Any]]:
    """Compile through the same path the CLI uses and read the YAML back."""
    bundle = compile_pipelines([p.build() for p in pipelines])
    return list(yaml.safe_load_all(render_stream(bundle)))


def whole_on_the_workflow_plane(pipeline: rtflow.Pipeline) -> rtflow.ir.Pipeline:
    """The pipeline without ``stream=``: every stage on the workflow plane (how a pipeline
    without a stream option compiles), for tests of the workflow plane's own templates. Its
    latency budget goes too: the workflow plane could not hold a stream plane's budget."""
    return dataclasses.replace(pipeline.build(), stream=None, latency_budget_ms=None)


def workflow_template(pipeline: rtflow.Pipeline) -> dict[str, Any]:
    (doc,) = [d for d in compile_docs(pipeline) if d["kind"] == "WorkflowTemplate"]
    return doc


def templates(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def tasks(doc: dict[str, Any], dag: str = "main") -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in templates(doc)[dag]["dag"]["tasks"]}
