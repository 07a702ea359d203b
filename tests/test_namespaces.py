"""Every object lands in the namespace its environment names, and every reference between
objects follows it (issue #13): Sensor -> Workflow, workflow step -> Triton Service, RoleBinding
-> ServiceAccount, for every kind, in the base and in each environment as rtflow renders it
(tests/test_environment_overlays.py shows the real kustomize builds the same objects)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from compiled import ROOT
from pipelines import namespaced

from rtflow.generators.compiler import compile_pipelines
from rtflow.loader import load_pipelines

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PriorityClass"}


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)


def problems(documents: list[dict[str, Any]], expected: str | None) -> list[str]:
    found = []
    services = {d["metadata"]["name"] for d in documents if d["kind"] == "Service"}
    for d in documents:
        where = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] not in CLUSTER_SCOPED and d["metadata"].get("namespace") != expected:
            found.append(f"{where} is in {d['metadata'].get('namespace')!r}")
        for subject in d.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and subject.get("namespace") not in (
                None,
                expected,
            ):
                found.append(f"{where} binds a ServiceAccount in {subject['namespace']!r}")
        for trigger in (d.get("spec") or {}).get("triggers") or [] if d["kind"] == "Sensor" else []:
            resource = (trigger["template"].get("k8s") or {}).get("source", {}).get("resource")
            if resource and resource["metadata"].get("namespace") not in (None, expected):
                found.append(f"{where} creates Workflows in {resource['metadata']['namespace']!r}")
        for text in strings(d):
            for service, namespace in re.findall(r"([a-z0-9-]+)\.([a-z0-9-]+)\.svc\b", text):
                if service in services and namespace != expected:
                    found.append(f"{where} calls {service} in {namespace!r}: {text}")
    return found


def test_the_base_and_every_environment_keep_objects_and_references_together() -> None:
    bundle = compile_pipelines([namespaced.rag.build()])
    base = [m.body for m in bundle.manifests]
    assert {d["kind"] for d in base} >= {
        "Deployment", "Service", "WorkflowTemplate", "Sensor", "EventSource", "RoleBinding",
    }  # fmt: skip
    assert problems(base, "rag") == []
    expected = {"staging": "rag-staging", "prod": "rag"}
    for env, namespace in expected.items():
        rendered = [m.body for e, m in bundle.rendered if e == env]
        assert rendered, env
        assert problems(rendered, namespace) == [], env


def test_a_server_without_a_namespace_runs_in_its_pipelines_and_is_called_by_short_name() -> None:
    pipeline = namespaced.rag.build()
    (server,) = pipeline.servers
    assert server.namespace == "rag"
    urls = {s.name: s.inference.url for s in pipeline.stages if s.inference is not None}
    assert urls == {
        "rank": "http://rag-triton:8000/v2/models/ranker/infer",
        "rank-grpc": "rag-triton:8001",
    }


def test_the_checker_sees_a_reference_left_behind() -> None:
    bundle = compile_pipelines([namespaced.rag.build()])
    rendered = [m.body for e, m in bundle.rendered if e == "staging"]
    template = next(d for d in rendered if d["kind"] == "WorkflowTemplate")
    step = next(t for t in template["spec"]["templates"] if "http" in t)
    step["http"]["url"] = step["http"]["url"].replace("rag-triton:", "rag-triton.rag.svc:")
    sensor = next(d for d in rendered if d["kind"] == "Sensor")
    sensor["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]["metadata"][
        "namespace"
    ] = "rag"
    found = problems(rendered, "rag-staging")
    assert any("calls rag-triton in 'rag'" in p for p in found)
    assert any("creates Workflows in 'rag'" in p for p in found)


@pytest.mark.parametrize("example", ["support_triage.py", "fraud_detection.py"])
def test_the_examples_environments_keep_objects_and_references_together(example: str) -> None:
    pipelines = [p.build() for p in load_pipelines(str(ROOT / "examples" / example))[1]]
    bundle = compile_pipelines(pipelines)
    for pipeline in pipelines:
        base = [m.body for m in bundle.manifests if m.pipeline == pipeline.name]
        assert problems(base, pipeline.namespace) == []
        for env in pipeline.environments:
            rendered = [m.body for e, m in bundle.rendered if e == env.name]
            assert problems(rendered, env.namespace or pipeline.namespace) == [], env.name


def test_a_server_in_another_namespace_is_called_by_its_full_name() -> None:
    from dataclasses import replace

    from rtflow.gpu.addresses import infer_url
    from rtflow.stage_ir import addressed

    elsewhere = replace(namespaced.SERVER, namespace="models")
    assert (
        infer_url(addressed(elsewhere, "rag"), "ranker")
        == "http://rag-triton.models.svc:8000/v2/models/ranker/infer"
    )
    assert infer_url(addressed(namespaced.SERVER, "rag"), "ranker").startswith("http://rag-triton:")
