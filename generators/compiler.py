"""IR in, checked bundle out: the one place that knows which generators a pipeline needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rtflow import ir
from rtflow.generators import bundle as bundle_module
from rtflow.generators import events, rbac
from rtflow.generators.bundle import Bundle, Manifest
from rtflow.generators.workflow_template import workflow_template


def to_document(model: Any) -> dict[str, Any]:
    document: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return document


def compile_pipelines(pipelines: Iterable[ir.Pipeline]) -> Bundle:
    manifests: list[Manifest] = []
    sources: list[tuple[str, str]] = []
    for pipeline in sorted(pipelines, key=lambda p: p.name):
        manifests.append(Manifest(pipeline.name, to_document(workflow_template(pipeline))))
        manifests += [Manifest(pipeline.name, d) for d in events.documents(pipeline)]
        manifests += [Manifest(pipeline.name, d) for d in rbac.documents(pipeline)]
        sources.append((pipeline.name, pipeline.source))
    return bundle_module.check(Bundle(manifests=tuple(manifests), sources=tuple(sources)))
