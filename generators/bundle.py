"""The compiled output of one or more pipelines: ordered objects, extra files, and the checks
that they fit together.

Generators each see one piece; only here are all pieces in view, so the cross-resource checks
(a DAG task names a template that exists and passes exactly its inputs; later sensor to event
source, trigger parameters to template parameters, inference steps to Triton services) run here,
before any writer touches the disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rtflow.errors import BundleError

Document = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object, as the plain dict that will be written, and the pipeline it is for."""

    pipeline: str
    body: Document

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def filename(self) -> str:
        return f"{self.kind.lower()}-{self.name}.yaml"


@dataclass(frozen=True)
class ExtraFile:
    """A file that is not a Kubernetes object (a model's config.pbtxt, a README)."""

    pipeline: str
    path: str
    text: str


@dataclass(frozen=True)
class Bundle:
    manifests: tuple[Manifest, ...]
    files: tuple[ExtraFile, ...] = ()
    sources: tuple[tuple[str, str], ...] = field(default=())

    def pipelines(self) -> list[str]:
        return sorted({m.pipeline for m in self.manifests} | {f.pipeline for f in self.files})

    def for_pipeline(self, name: str) -> list[Manifest]:
        return [m for m in self.manifests if m.pipeline == name]


Check = Callable[[Bundle], Iterable[str]]


def check_unique_objects(bundle: Bundle) -> Iterable[str]:
    seen: set[tuple[str, str, str]] = set()
    for m in bundle.manifests:
        namespace = str(m.body["metadata"].get("namespace") or "")
        key = (m.kind, namespace, m.name)
        if key in seen:
            yield f"{m.kind} {m.name!r} is generated twice (pipeline {m.pipeline!r})"
        seen.add(key)


def check_dag_tasks(bundle: Bundle) -> Iterable[str]:
    """Each DAG task names a template of the same WorkflowTemplate and passes exactly its inputs."""
    for m in bundle.manifests:
        if m.kind != "WorkflowTemplate":
            continue
        templates = {t["name"]: t for t in m.body["spec"]["templates"]}
        for template in templates.values():
            tasks = template.get("dag", {}).get("tasks", [])
            task_names = {t["name"] for t in tasks}
            for task in tasks:
                target = templates.get(task["template"])
                where = f"WorkflowTemplate {m.name!r}, task {task['name']!r}"
                if target is None:
                    yield f"{where}: template {task['template']!r} does not exist"
                    continue
                declared = {p["name"]: p for p in target.get("inputs", {}).get("parameters", [])}
                passed = {p["name"] for p in task.get("arguments", {}).get("parameters", [])}
                for extra in sorted(passed - set(declared)):
                    yield f"{where}: passes {extra!r}, which {task['template']!r} does not declare"
                for name, p in sorted(declared.items()):
                    if name not in passed and "default" not in p and "value" not in p:
                        yield f"{where}: does not pass required input {name!r}"
                for dependency in _depends_names(task.get("depends", "")):
                    if dependency not in task_names:
                        yield f"{where}: depends on unknown task {dependency!r}"


def _depends_names(depends: str) -> list[str]:
    names = []
    for token in depends.replace("(", " ").replace(")", " ").split():
        if token in {"&&", "||", "!"}:
            continue
        names.append(token.split(".", 1)[0].lstrip("!"))
    return names


CHECKS: tuple[Check, ...] = (check_unique_objects, check_dag_tasks)


def check(bundle: Bundle, checks: Iterable[Check] = CHECKS) -> Bundle:
    problems = [problem for c in checks for problem in c(bundle)]
    if problems:
        raise BundleError("; ".join(problems))
    return bundle
