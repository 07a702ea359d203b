"""IR in, checked bundle out: the one place that knows which generators a pipeline needs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rtflow import ir
from rtflow.generators import bundle as bundle_module
from rtflow.generators import events, gitops, rbac
from rtflow.generators.bundle import Bundle, ExtraFile, Manifest
from rtflow.generators.workflow_template import workflow_template
from rtflow.gpu.config import render_config
from rtflow.gpu.serving import serving_manifests


def to_document(model: Any) -> dict[str, Any]:
    document: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return document


def compile_pipelines(pipelines: Iterable[ir.Pipeline]) -> Bundle:
    manifests: list[Manifest] = []
    files: list[ExtraFile] = []
    sources: list[tuple[str, str]] = []
    for pipeline in sorted(pipelines, key=lambda p: p.name):
        documents = [to_document(workflow_template(pipeline))]
        documents += events.documents(pipeline)
        documents += rbac.documents(pipeline)
        for server in pipeline.servers:
            documents += serving_manifests(server)
            files += [
                ExtraFile(pipeline.name, f"model-repository/{path}", text)
                for path, text in sorted(
                    (f"{m.name}/config.pbtxt", render_config(m)) for m in server.models
                )
            ]
        manifests += [Manifest(pipeline.name, gitops.with_sync_wave(d)) for d in documents]
        files.append(ExtraFile(pipeline.name, "README.md", gitops.readme(pipeline)))
        sources.append((pipeline.name, pipeline.source))
    bundle = Bundle(manifests=tuple(manifests), files=tuple(files), sources=tuple(sources))
    return bundle_module.check(bundle)
