"""``rtflow lint``: check a folder of manifests offline, generated or hand-edited.

Four kinds of finding, each naming the file, the object and the field:

* ``structure``: Argo Workflows objects against hera's typed models with unknown fields
  forbidden (pydantic ignores unknown fields, so a round trip shows which ones it dropped);
  custom resources of the kinds rtflow.verify.crd_schema knows (Argo CD Applications and
  ApplicationSets; KEDA ScaledObjects and TriggerAuthentications; Strimzi KafkaTopics;
  prometheus-operator PodMonitors, ServiceMonitors and PrometheusRules) against their upstream
  CRD's own schema, strict, when tools/provision.sh has written it (when it has not, the report
  says which objects were skipped); core Kubernetes kinds against kubernetes-validate, strict.
* ``cross-resource``: the compiler's own bundle checks (a DAG task names a template that exists
  and passes its inputs; a Sensor names generated EventSources, events and WorkflowTemplate
  parameters; a RoleBinding binds generated identities).
* ``security``: non-root, read-only root filesystem, no privilege escalation, CPU and memory
  limits on every container, no credential given inline.
* ``argo-lint`` / ``argo-events-lint``: the real upstream linters, when they are installed
  (tools/provision.sh); when they are not, the report says they were skipped.

A folder with environment overlays is checked twice over: its files as they are, and each
overlay as the real kustomize builds it (``overlay`` findings when the build fails), since an
overlay's patches are what a cluster receives and can undo any default (a patch dropping
``readOnlyRootFilesystem``, a namespace that splits a Sensor from its EventSource).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rtflow.generators import bundle as bundle_module
from rtflow.generators.labels import PIPELINE
from rtflow.verify import KUBERNETES_VERSION, argo_linters, crd_schema

WORKFLOW_KINDS = ("WorkflowTemplate", "Workflow", "CronWorkflow", "ClusterWorkflowTemplate")
EVENTS_KINDS = ("EventSource", "Sensor", "EventBus")
_CREDENTIAL = re.compile(
    r"PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY", re.IGNORECASE
)


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str
    object: str
    field: str
    message: str

    def line(self) -> str:
        parts = [p for p in (self.file, self.object, self.field) if p]
        return ": ".join([*parts, f"{self.message} [{self.rule}]"])


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    def human(self) -> str:
        lines = [f.line() for f in self.findings]
        lines += [f"skipped: {s}" for s in self.skipped]
        verdict = "clean" if self.ok else f"{len(self.findings)} finding(s)"
        lines.append(f"rtflow lint: {self.checked} object(s), {verdict}")
        return "\n".join(lines) + "\n"

    def json(self) -> str:
        return (
            json.dumps(
                {
                    "ok": self.ok,
                    "checked": self.checked,
                    "findings": [asdict(f) for f in self.findings],
                    "skipped": self.skipped,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )


@dataclass(frozen=True)
class Loaded:
    path: Path
    body: dict[str, Any]

    @property
    def label(self) -> str:
        metadata = self.body.get("metadata") or {}
        return f"{self.body.get('kind')}/{metadata.get('name') or metadata.get('generateName')}"


class UsageError(Exception):
    """A path that does not exist: the caller's mistake, exit 2, not a finding."""


def yaml_files(paths: Sequence[str | Path]) -> list[Path]:
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    return files


def load(files: Iterable[Path], report: LintReport) -> list[Loaded]:
    loaded: list[Loaded] = []
    for path in files:
        try:
            documents = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except yaml.YAMLError as exc:
            report.findings.append(Finding("parse", str(path), "", "", f"not YAML: {exc}"))
            continue
        for document in documents:
            if not isinstance(document, dict) or "kind" not in document:
                continue
            if document.get("kind") == "Kustomization":
                continue
            loaded.append(Loaded(path, document))
    return loaded


# structure


def _dropped(original: Any, kept: Any, path: str) -> Iterator[str]:
    """Paths present in ``original`` that the model round trip did not keep: unknown fields."""
    if isinstance(original, dict) and isinstance(kept, dict):
        for key, value in original.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in kept:
                yield child
            else:
                yield from _dropped(value, kept[key], child)
    elif isinstance(original, list) and isinstance(kept, list):
        for index, (a, b) in enumerate(zip(original, kept, strict=False)):
            yield from _dropped(a, b, f"{path}[{index}]")


def check_workflow_structure(item: Loaded) -> Iterator[Finding]:
    from hera.workflows import models
    from pydantic import ValidationError

    kind = str(item.body["kind"])
    model = getattr(models, kind)
    try:
        parsed = model.model_validate(item.body)
    except ValidationError as exc:
        for error in exc.errors():
            location = ".".join(str(p) for p in error["loc"])
            yield Finding("structure", str(item.path), item.label, location, error["msg"])
        return
    kept = parsed.model_dump(by_alias=True, exclude_unset=True, mode="json")
    for unknown in _dropped(item.body, kept, ""):
        yield Finding("structure", str(item.path), item.label, unknown, "unknown field")


def check_crd_structure(item: Loaded) -> Iterator[Finding]:
    """A custom resource rtflow knows (an Argo CD Application, a KEDA ScaledObject, ...)
    against its upstream CRD's schema, strict.

    Raises :class:`crd_schema.CRDSchemaUnavailable` when the schema is not provisioned.
    """
    for problem in crd_schema.findings(item.body):
        yield Finding("structure", str(item.path), item.label, problem.path, problem.message)


def check_core_structure(item: Loaded) -> Iterator[Finding]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(item.body, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return  # a CRD kubernetes-validate does not know: nothing to say about it
    except kubernetes_validate.ValidationError as exc:
        location = ".".join(str(p) for p in getattr(exc, "path", []) or [])
        yield Finding("structure", str(item.path), item.label, location, str(exc).splitlines()[0])


# security


def _containers(body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = body.get("kind")
    spec = body.get("spec") or {}
    if kind in WORKFLOW_KINDS:
        workflow_spec = spec.get("workflowSpec", spec) if kind == "CronWorkflow" else spec
        for index, template in enumerate(workflow_spec.get("templates") or []):
            for key in ("container", "script"):
                if key in template:
                    yield f"spec.templates[{index}].{key}", template[key]
    elif kind in ("EventSource", "Sensor"):
        container = (spec.get("template") or {}).get("container")
        yield "spec.template.container", container or {}
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        pod = (spec.get("template") or {}).get("spec") or {}
        for index, container in enumerate(pod.get("containers") or []):
            yield f"spec.template.spec.containers[{index}]", container


def _pod_security(body: dict[str, Any]) -> dict[str, Any]:
    spec = body.get("spec") or {}
    kind = body.get("kind")
    if kind in WORKFLOW_KINDS:
        return dict(spec.get("securityContext") or {})
    if kind in ("EventSource", "Sensor"):
        return dict((spec.get("template") or {}).get("securityContext") or {})
    return dict(((spec.get("template") or {}).get("spec") or {}).get("securityContext") or {})


def check_security(item: Loaded) -> Iterator[Finding]:
    pod = _pod_security(item.body)
    for where, container in _containers(item.body):

        def finding(field_name: str, message: str, where: str = where) -> Finding:
            return Finding("security", str(item.path), item.label, f"{where}.{field_name}", message)

        context = container.get("securityContext") or {}
        if not (context.get("runAsNonRoot") or pod.get("runAsNonRoot")):
            yield finding("securityContext.runAsNonRoot", "may run as root; set runAsNonRoot: true")
        if context.get("readOnlyRootFilesystem") is not True:
            yield finding(
                "securityContext.readOnlyRootFilesystem",
                "root filesystem is writable; set readOnlyRootFilesystem: true",
            )
        if context.get("allowPrivilegeEscalation") is not False:
            yield finding(
                "securityContext.allowPrivilegeEscalation",
                "privilege escalation is not disabled; set allowPrivilegeEscalation: false",
            )
        if context.get("privileged"):
            yield finding("securityContext.privileged", "runs privileged")
        limits = (container.get("resources") or {}).get("limits") or {}
        for resource in ("cpu", "memory"):
            if resource not in limits:
                yield finding(f"resources.limits.{resource}", f"no {resource} limit")
        mounted = [str(m.get("mountPath", "")) for m in container.get("volumeMounts") or []]
        for index, env in enumerate(container.get("env") or []):
            value = env.get("value")
            if not value or not _CREDENTIAL.search(str(env.get("name", ""))):
                continue
            if _inside_mount(str(value), mounted):
                continue  # the path of a file mounted into the container (a Secret's, say)
            yield finding(
                f"env[{index}]",
                f"{env.get('name')} looks like a credential given inline; use "
                "valueFrom.secretKeyRef, or mount the Secret and give the file's path",
            )


def _inside_mount(value: str, mounts: Sequence[str]) -> bool:
    """``value`` is a path under one of the container's volume mounts (no ``..`` tricks)."""
    if not value.startswith("/") or "/../" in f"{value}/":
        return False
    return any(m and (value == m or value.startswith(m.rstrip("/") + "/")) for m in mounts)


# cross-resource


def check_cross_resource(items: Sequence[Loaded]) -> Iterator[Finding]:
    manifests = tuple(
        bundle_module.Manifest(
            str(((i.body.get("metadata") or {}).get("labels") or {}).get(PIPELINE, "")),
            i.body,
        )
        for i in items
        if (i.body.get("metadata") or {}).get("name")
    )
    bundle = bundle_module.Bundle(manifests)
    for check in bundle_module.CHECKS:
        try:
            problems = list(check(bundle))
        except (KeyError, TypeError, AttributeError, IndexError) as exc:
            problems = [
                f"{check.__name__} could not read the objects ({type(exc).__name__}: {exc})"
            ]
        for problem in problems:
            yield Finding("cross-resource", "", "", "", problem)


# the real linters


def run_real_linters(items: Sequence[Loaded], report: LintReport) -> None:
    workflow_files = sorted({str(i.path) for i in items if i.body.get("kind") in WORKFLOW_KINDS})
    events_files = sorted({str(i.path) for i in items if i.body.get("kind") in EVENTS_KINDS})
    for files, runner, name in (
        (workflow_files, argo_linters.run_argo_lint, "argo-lint"),
        (events_files, argo_linters.run_argo_events_lint, "argo-events-lint"),
    ):
        if not files:
            continue
        try:
            result = runner(files)
        except argo_linters.LinterError as exc:
            report.skipped.append(f"{name}: {exc}")
            continue
        for line in result.findings:
            report.findings.append(Finding(name, "", "", "", line))


def lint_paths(paths: Sequence[str | Path], *, real_linters: bool = True) -> LintReport:
    report = LintReport()
    items = load(yaml_files(paths), report)
    check_items(items, report, real_linters=real_linters)
    in_files = {_gist(f) for f in report.findings}
    for folder in overlay_folders(paths):
        before = len(report.findings)
        lint_overlay(folder, report, real_linters=real_linters)
        # A problem of the base shows in every build of it: say it once, where it is written.
        report.findings[before:] = [f for f in report.findings[before:] if _gist(f) not in in_files]
    if not real_linters:
        report.skipped.append("argo-lint and argo-events-lint (--no-real-linters)")
    return report


def check_items(items: Sequence[Loaded], report: LintReport, *, real_linters: bool) -> None:
    """Every check over one set of objects that are deployed together."""
    report.checked += len(items)
    # Per release whose schemas are missing: the objects not checked, and why (the last error).
    unchecked: dict[crd_schema.Release, list[str]] = {}
    missing: dict[crd_schema.Release, crd_schema.CRDSchemaUnavailable] = {}
    for item in items:
        kind = item.body.get("kind")
        api = str(item.body.get("apiVersion", ""))
        entry = crd_schema.lookup(item.body)
        if kind in WORKFLOW_KINDS and api.startswith("argoproj.io/"):
            report.findings += check_workflow_structure(item)
        elif entry is not None:
            try:
                report.findings += list(check_crd_structure(item))
            except crd_schema.CRDSchemaUnavailable as exc:
                unchecked.setdefault(entry.release, []).append(item.label)
                missing[entry.release] = exc
        elif not api.startswith("argoproj.io/"):
            report.findings += check_core_structure(item)
        report.findings += check_security(item)
    for release, labels in unchecked.items():
        report.skipped.append(
            f"{release.slug}-schema: {len(labels)} object(s) not checked against "
            f"{release.project}'s schema ({', '.join(labels)}): {missing[release]}"
        )
    report.findings += check_cross_resource(items)
    if real_linters:
        run_real_linters(items, report)


# overlays: what an environment deploys is the overlay's build, not the base


def overlay_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Folders whose kustomization transforms objects from outside itself (``../../base``):
    environment overlays, hand-written or generated. Their build is what a cluster gets."""
    found: set[Path] = set()
    for given in paths:
        path = Path(given)
        candidates = path.rglob("kustomization.yaml") if path.is_dir() else []
        for candidate in candidates:
            try:
                document = yaml.safe_load(candidate.read_text(encoding="utf-8"))
            except yaml.YAMLError:
                continue  # reported as a parse finding by load()
            resources = document.get("resources") if isinstance(document, dict) else None
            if isinstance(resources, list) and any(
                isinstance(r, str) and r.startswith("../") for r in resources
            ):
                found.add(candidate.parent)
    return sorted(found)


def lint_overlay(folder: Path, report: LintReport, *, real_linters: bool) -> None:
    """Build ``folder`` with the real kustomize and check what it builds, as one set."""
    from rtflow.verify.kustomize import KustomizeError, KustomizeUnavailable, kustomize_build

    where = f"{folder} (kustomize build)"
    try:
        documents = kustomize_build(folder)
    except KustomizeUnavailable as exc:
        report.skipped.append(f"overlay {folder} not built: {exc}")
        return
    except KustomizeError as exc:
        report.findings.append(Finding("overlay", str(folder), "", "", str(exc)))
        return
    items = [Loaded(Path(where), d) for d in documents if isinstance(d, dict) and "kind" in d]
    if not real_linters:
        check_items(items, report, real_linters=False)
        return
    # The real linters read files: the build, one object per file, in a scratch folder.
    import tempfile

    from rtflow.generators import yaml_text

    with tempfile.TemporaryDirectory(prefix="rtflow-lint-") as scratch:
        written = []
        for index, item in enumerate(items):
            file = Path(scratch) / f"{index:03d}-{str(item.body['kind']).lower()}.yaml"
            file.write_text(yaml_text.dump(item.body), encoding="utf-8")
            written.append(Loaded(file, item.body))
        before = len(report.findings)
        check_items(written, report, real_linters=True)
        report.findings[before:] = [
            _relabel(finding, scratch, where) for finding in report.findings[before:]
        ]


def _gist(finding: Finding) -> tuple[str, str, str, str]:
    return (finding.rule, finding.object, finding.field, finding.message)


def _relabel(finding: Finding, scratch: str, where: str) -> Finding:
    return Finding(
        finding.rule,
        where if finding.file.startswith(scratch) else finding.file,
        finding.object,
        finding.field,
        finding.message.replace(scratch, where),
    )
