"""IR in, checked bundle out: the one place that knows which generators a pipeline needs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from rtflow import ir, latency
from rtflow.argocd import resolve_argocd
from rtflow.errors import DefinitionError, RtflowError
from rtflow.generators import bundle as bundle_module
from rtflow.generators import events, gitops, network, overlays, rbac
from rtflow.generators import stream as stream_plane
from rtflow.generators.bundle import Bundle, ExtraFile, Manifest, YamlFile
from rtflow.generators.stream import handoff
from rtflow.generators.workflow_template import workflow_template
from rtflow.gpu.config import model_files
from rtflow.gpu.serving import serving_manifests


def to_document(model: Any) -> dict[str, Any]:
    document: dict[str, Any] = model.model_dump(by_alias=True, exclude_none=True, mode="json")
    return document


def compile_pipelines(
    pipelines: Iterable[ir.Pipeline],
    *,
    environments: Sequence[str] | None = None,
    repo_url: str | None = None,
    revision: str | None = None,
    path_prefix: str | None = None,
    default_path_prefix: str | None = None,
    command: str | None = None,
) -> Bundle:
    """``environments`` selects the overlays to write (None: every declared one); ``repo_url``,
    ``revision`` and ``path_prefix`` override each pipeline's ``rtflow.ArgoCD`` values;
    ``default_path_prefix`` (the output folder, when relative) is used when neither gives one;
    ``command`` (the ``rtflow compile`` line) goes in each pipeline's README."""
    pipelines = sorted(pipelines, key=lambda p: p.name)
    selected = _select(pipelines, environments)
    manifests: list[Manifest] = []
    files: list[ExtraFile] = []
    sources: list[tuple[str, str]] = []
    overlay_documents: list[YamlFile] = []
    applications: list[Manifest] = []
    rendered: list[tuple[str, Manifest]] = []
    kept: list[str] = []
    for pipeline in pipelines:
        check_latency_budget(pipeline)
        # With stream=, the workflow plane runs only what the hot path hands off.
        part = handoff.workflow_part(pipeline)
        documents = []
        if part is not None:
            documents += [to_document(workflow_template(part))]
            documents += events.documents(part)
            documents += rbac.documents(part)
        for server in pipeline.servers:
            documents += serving_manifests(server)
            files += [
                ExtraFile(pipeline.name, f"model-repository/{path}", text)
                for path, text in sorted(f for m in server.models for f in model_files(m))
            ]
        documents += stream_plane.documents(pipeline)
        documents += network.for_pipeline(pipeline, documents)
        documents = [gitops.with_sync_wave(d) for d in documents]
        manifests += [Manifest(pipeline.name, d) for d in documents]
        argocd = resolve_argocd(
            pipeline.argocd, repo_url=repo_url, revision=revision, path_prefix=path_prefix
        )
        if argocd.repo_url and argocd.path_prefix is None:
            if default_path_prefix is None:
                raise RtflowError(
                    f"pipeline {pipeline.name!r}: an Argo CD Application needs the output "
                    "folder's path inside the repository; pass --path-prefix DIR (or set "
                    "rtflow.ArgoCD(path_prefix=...))"
                )
            argocd = resolve_argocd(argocd, path_prefix=default_path_prefix)
        files.append(
            ExtraFile(pipeline.name, "README.md", gitops.readme(pipeline, argocd, command))
        )
        sources.append((pipeline.name, pipeline.source))
        targets: list[ir.Environment | None] = list(pipeline.environments) or [None]
        for env in targets:
            if env is not None and env.name not in selected[pipeline.name]:
                kept.append(f"{pipeline.name}/overlays/{env.name}/")
                kept.append(f"argocd/application-{pipeline.name}-{env.name}.yaml")
                continue
            if env is not None:
                plan = overlays.plan(pipeline, env, documents)
                overlay_documents += [
                    YamlFile(pipeline.name, path, body)
                    for path, body in sorted(overlays.overlay_files(plan).items())
                ]
                files += [
                    ExtraFile(pipeline.name, path, text)
                    for path, text in sorted(overlays.model_config_files(plan).items())
                ]
                rendered += [
                    (env.name, Manifest(pipeline.name, d)) for d in overlays.apply(plan, documents)
                ]
            if argocd.repo_url:
                applications.append(
                    Manifest(pipeline.name, gitops.application(pipeline, argocd, env, documents))
                )
    bundle = Bundle(
        manifests=tuple(manifests),
        files=tuple(files),
        sources=tuple(sources),
        layered=tuple(p.name for p in pipelines if p.environments),
        overlays=tuple(overlay_documents),
        applications=tuple(applications),
        rendered=tuple(rendered),
        kept=tuple(kept),
    )
    return bundle_module.check(bundle)


def check_latency_budget(pipeline: ir.Pipeline) -> None:
    """The first path whose estimate (rtflow.latency's cost model) is over the budget fails
    the compile, with the plane's way out."""
    for estimate in latency.over_budget(pipeline):
        path = " -> ".join(estimate.tasks)
        budget = pipeline.latency_budget_ms
        if estimate.plane == "workflow":
            fix = (
                "put the hot path on the stream plane (stream=rtflow.Stream(...)), or raise "
                "latency_budget_ms if seconds are fine"
            )
            problem = (
                f"the path {path} runs on the workflow plane, at least ~"
                f"{estimate.ms / 1000:.1f} s per event, over the {budget} ms latency budget"
            )
        else:
            fix = (
                "shorten stream.transaction_interval_ms / stream.max_wait_ms, take "
                "guarantee='at_least_once', or raise latency_budget_ms"
            )
            problem = (
                f"the path {path} runs on the stream plane at ~{estimate.ms:.0f} ms per event, "
                f"over the {budget} ms latency budget"
            )
        raise DefinitionError(
            f"{problem} (estimate: rtflow graph; cost model: rtflow.latency)",
            fix=fix,
            field="latency_budget_ms",
            pipeline=pipeline.name,
        )


def _select(
    pipelines: Sequence[ir.Pipeline], environments: Sequence[str] | None
) -> dict[str, set[str]]:
    declared = {p.name: {e.name for e in p.environments} for p in pipelines}
    if environments is None:
        return declared
    wanted = set(environments)
    for pipeline in pipelines:
        missing = sorted(wanted - declared[pipeline.name])
        if declared[pipeline.name] and missing:
            raise RtflowError(
                f"pipeline {pipeline.name!r} declares no environment {missing[0]!r} "
                f"(it declares {sorted(declared[pipeline.name])}); pick one of those with --env"
            )
    if not any(declared.values()):
        raise RtflowError(
            "--env selects an environment, but no pipeline declares any; add "
            "environments=[rtflow.Environment(...)] to the pipeline or drop --env"
        )
    return {name: names & wanted for name, names in declared.items()}
