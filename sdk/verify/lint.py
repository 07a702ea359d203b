"""``rtflow lint``: check a folder of manifests offline, generated or hand-edited.

Five kinds of finding, each naming the file, the object and the field:

* ``parse``: a file that is not readable YAML (not UTF-8, binary, too large, nested too
  deeply, ...; :mod:`rtflow.verify.loading`), one line each; the other files are still linted.
* ``structure``, strict everywhere (an unknown field is a finding): Argo Workflows objects
  against hera's typed models (pydantic ignores unknown fields, so a round trip shows which ones
  it dropped); Argo Events objects against Argo Events' own schema
  (:mod:`rtflow.verify.events_schema`); the custom resources rtflow.verify.crd_schema knows
  (Argo CD, KEDA, Strimzi, prometheus-operator) against their upstream CRD's schema; core
  Kubernetes kinds against kubernetes-validate (:mod:`rtflow.verify.core_schema`). A schema that
  is not provisioned (tools/provision.sh), or a kind lint has no schema for, is said in
  ``skipped``, with the objects it concerns.
* ``cross-resource``: the compiler's own bundle checks (a DAG task names a template that exists
  and passes its inputs; a Sensor's triggers start a WorkflowTemplate with its parameters; a
  RoleBinding binds generated identities), and a Sensor's dependencies name EventSources and
  events among the linted objects (:mod:`rtflow.verify.events_refs`, which also decides when
  that is only a warning).
* ``security``: non-root, read-only root filesystem, no privilege escalation, CPU and memory
  limits on every container, no credential given inline.
* ``argo-lint`` / ``argo-events-lint``: the real upstream linters, when they are installed
  (tools/provision.sh); when they are not, the report says they were skipped.

A check that cannot make sense of an object (a list where a map belongs) is a finding on that
object, never a traceback. A folder with environment overlays is checked twice over: its files
as they are, and each overlay as the real kustomize builds it (``overlay`` findings when the
build fails), since an overlay's patches are what a cluster receives and can undo any default (a
patch dropping ``readOnlyRootFilesystem``, a namespace that splits a Sensor from its
EventSource). What the files as written already show is not said again for each build.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rtflow import credentials
from rtflow.generators import bundle as bundle_module
from rtflow.generators.labels import PIPELINE
from rtflow.verify import (
    KUBERNETES_VERSION,
    argo_linters,
    core_schema,
    crd_schema,
    events_refs,
    events_schema,
)
from rtflow.verify.loading import Unreadable, UsageError, find_files, one_line, read_documents
from rtflow.verify.report import Finding, LintReport, Loaded

__all__ = [
    "KUBERNETES_VERSION",
    "Finding",
    "LintReport",
    "Loaded",
    "UsageError",
    "check_items",
    "check_security",
    "lint_paths",
]

WORKFLOW_KINDS = ("WorkflowTemplate", "Workflow", "CronWorkflow", "ClusterWorkflowTemplate")
EVENTS_KINDS = events_schema.KINDS


def load(files: Iterable[Path], report: LintReport) -> list[Loaded]:
    """The Kubernetes objects of ``files``; a file that cannot be read is a ``parse`` finding
    (one line: the file and why) and the others are still read."""
    loaded: list[Loaded] = []
    for path in files:
        try:
            documents = read_documents(path)
        except Unreadable as exc:
            report.findings.append(Finding("parse", str(path), "", "", str(exc)))
            continue
        for document in documents:
            if not isinstance(document, dict) or "kind" not in document:
                continue  # a patch, a list of JSON patch operations, an empty document
            if document.get("kind") == "Kustomization":
                continue
            if _is_list(document):  # what `kubectl get -o yaml` prints: check each item
                loaded += [Loaded(path, i) for i in document["items"] if isinstance(i, dict)]
                continue
            loaded.append(Loaded(path, document))
    return loaded


def _is_list(document: dict[str, Any]) -> bool:
    return (
        document.get("apiVersion") == "v1"
        and document.get("kind") == "List"
        and isinstance(document.get("items"), list)
    )


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


def check_events_structure(item: Loaded) -> Iterator[Finding]:
    """An EventSource, Sensor or EventBus against Argo Events' schema, strict.

    Raises :class:`events_schema.EventsSchemaUnavailable` when it is not provisioned.
    """
    for problem in events_schema.findings(item.body):
        yield Finding("structure", str(item.path), item.label, problem.path, problem.message)


def check_core_structure(item: Loaded) -> Iterator[Finding]:
    """A core kind against kubernetes-validate's strict schema (its first problem).

    Raises :class:`core_schema.SchemaNotFound` for a kind it has no schema of.
    """
    error = core_schema.first_error(item.body)
    if error is not None:  # located at the field, as for custom resources ("x: unknown field")
        for problem in crd_schema.schema_findings(error):
            yield Finding("structure", str(item.path), item.label, problem.path, problem.message)


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
        # What counts as a credential is rtflow.credentials' one definition (the compiler's
        # too); a path counts as a reference only under one of this container's mounts.
        mounted = [str(m.get("mountPath", "")) for m in container.get("volumeMounts") or []]
        for index, env in enumerate(container.get("env") or []):
            value = env.get("value")
            if not value:
                continue
            reason = credentials.env_credential(str(env.get("name", "")), str(value), mounted)
            if reason:
                yield finding(
                    f"env[{index}]",
                    f"{reason} given inline; use valueFrom.secretKeyRef, or mount the Secret "
                    "and give the file's path",
                )
        for field_name in ("command", "args"):
            line = [str(a) for a in container.get(field_name) or []]
            for reason in credentials.argument_credentials(line):
                yield finding(field_name, f"{reason}; take it from a Secret instead")


# cross-resource


def _for_bundle(body: dict[str, Any]) -> dict[str, Any]:
    """The object as the bundle checks see it: a Sensor without its dependencies, which
    :mod:`rtflow.verify.events_refs` checks instead (the bundle's check takes the objects of one
    compile as complete, so an EventSource from elsewhere would read as "not generated")."""
    spec = body.get("spec")
    if body.get("kind") == "Sensor" and isinstance(spec, dict) and "dependencies" in spec:
        return {**body, "spec": {**spec, "dependencies": []}}
    return body


def check_cross_resource(items: Sequence[Loaded], report: LintReport) -> None:
    manifests = []
    for item in items:
        metadata = item.body.get("metadata")
        if not (isinstance(metadata, dict) and metadata.get("name")):
            continue
        labels = metadata.get("labels")
        pipeline = labels.get(PIPELINE, "") if isinstance(labels, dict) else ""
        manifests.append(bundle_module.Manifest(str(pipeline), _for_bundle(item.body)))
    bundle = bundle_module.Bundle(tuple(manifests))
    for check in bundle_module.CHECKS:
        try:
            problems = list(check(bundle))
        except Exception as exc:  # an object of an unexpected shape: say so, check the rest
            problems = [
                f"{check.__name__} could not read the objects ({type(exc).__name__}: "
                f"{one_line(exc)})"
            ]
        for problem in problems:
            report.findings.append(Finding("cross-resource", "", "", "", problem))
    try:
        for warning, finding in events_refs.check(items):
            (report.warnings if warning else report.findings).append(finding)
    except Exception as exc:
        message = (
            f"could not read the Sensors' dependencies ({type(exc).__name__}: {one_line(exc)})"
        )
        report.findings.append(Finding("cross-resource", "", "", "", message))


# the real linters


def run_real_linters(items: Sequence[Loaded], report: LintReport) -> None:
    """The real linters over the files the objects came from. They read files themselves, so
    an object read from a pipe or a device (``<(kubectl kustomize ...)``, already consumed, and
    not open in their process) is written to a scratch file for them; their findings name the
    path it was read from."""
    import tempfile

    from rtflow.generators import yaml_text

    with tempfile.TemporaryDirectory(prefix="rtflow-lint-") as scratch:
        written: dict[str, str] = {}  # scratch file -> the path it stands for

        def readable(index: int, item: Loaded) -> str:
            if item.path.is_file():
                return str(item.path)
            file = Path(scratch) / f"{index:05d}-{str(item.body.get('kind')).lower()}.yaml"
            file.write_text(yaml_text.dump(item.body), encoding="utf-8")
            written[str(file)] = str(item.path)
            return str(file)

        kinds = [(readable(n, i), i.body.get("kind")) for n, i in enumerate(items)]
        workflow_files = sorted({f for f, kind in kinds if kind in WORKFLOW_KINDS})
        events_files = sorted({f for f, kind in kinds if kind in EVENTS_KINDS})
        for files, runner, name in (
            (workflow_files, argo_linters.run_argo_lint, "argo-lint"),
            (events_files, argo_linters.run_argo_events_lint, "argo-events-lint"),
        ):
            if not files:
                continue
            try:
                result = runner(files)
            except argo_linters.LinterError as exc:
                report.skip(f"{name}: {exc}")
                continue
            for line in result.findings:
                for file, original in written.items():
                    line = line.replace(file, original)
                report.findings.append(Finding(name, "", "", "", line))


def lint_paths(paths: Sequence[str | Path], *, real_linters: bool = True) -> LintReport:
    """Lint ``paths`` (files and folders).

    Raises :class:`UsageError` for a path that does not exist, and when the paths hold no
    manifest at all (an empty folder, one without YAML, only a kustomization): a lint of
    nothing is not a clean lint.
    """
    report = LintReport()
    found = find_files(paths)
    given = ", ".join(str(p) for p in paths)
    if not found.files and not found.skipped:
        raise UsageError(f"no manifests found in {given}: no .yaml or .yml file there")
    for path, reason in found.skipped:
        report.findings.append(Finding("parse", str(path), "", "", reason))
    items = load(found.files, report)
    if not items and not report.findings:
        raise UsageError(
            f"no manifests found in {given}: {len(found.files)} YAML file(s) read, none holds a "
            "Kubernetes object (a mapping with apiVersion and kind)"
        )
    check_items(items, report, real_linters=real_linters)
    in_files = {_gist(f) for f in report.findings}
    for folder in overlay_folders(paths):
        before = len(report.findings)
        lint_overlay(folder, report, real_linters=real_linters)
        # A problem of the base shows in every build of it: say it once, where it is written.
        report.findings[before:] = [f for f in report.findings[before:] if _gist(f) not in in_files]
    report.warnings = _distinct_warnings(report)
    if not real_linters:
        report.skip("argo-lint and argo-events-lint (--no-real-linters)")
    report.close()
    return report


def _distinct_warnings(report: LintReport) -> list[Finding]:
    """Each warning once (the files and each overlay build may say the same), and none where a
    finding already is (the same field of the same object)."""
    spots = {(f.object, f.field) for f in report.findings}
    seen: set[tuple[str, str, str, str]] = set()
    kept = []
    for warning in report.warnings:
        if _gist(warning) in seen or (warning.object, warning.field) in spots:
            continue
        seen.add(_gist(warning))
        kept.append(warning)
    return kept


def _guarded(item: Loaded, rule: str, checks: Iterable[Finding]) -> list[Finding]:
    """The findings of one check of one object; a check that cannot make sense of the object
    (a list where a map belongs, nesting too deep to walk) is itself one finding on it."""
    try:
        return list(checks)
    except RecursionError:
        reason = "nested too deeply to check"
    except (
        crd_schema.CRDSchemaUnavailable,
        events_schema.EventsSchemaUnavailable,
        core_schema.SchemaNotFound,
    ):
        raise
    except Exception as exc:
        reason = f"could not be checked ({type(exc).__name__}: {one_line(exc)})"
    return [
        Finding(rule, str(item.path), item.label, "", f"{reason}; is the object malformed here?")
    ]


def check_structure(item: Loaded, report: LintReport) -> None:
    """``item`` against its kind's schema, strict; or say in ``skipped`` why it was not."""
    body = item.body
    kind = body.get("kind")
    api = str(body.get("apiVersion", ""))
    if not (isinstance(kind, str) and kind and isinstance(body.get("apiVersion"), str) and api):
        message = "apiVersion and kind must both be given, as strings (apps/v1, Deployment)"
        report.findings.append(Finding("structure", str(item.path), item.label, "", message))
        return
    entry = crd_schema.lookup(body)
    try:
        if kind in WORKFLOW_KINDS and api.startswith("argoproj.io/"):
            report.findings += _guarded(item, "structure", check_workflow_structure(item))
        elif events_schema.is_events(body):
            report.findings += _guarded(item, "structure", check_events_structure(item))
        elif entry is not None:
            report.findings += _guarded(item, "structure", check_crd_structure(item))
        elif not api.startswith("argoproj.io/"):
            report.findings += _guarded(item, "structure", check_core_structure(item))
        else:
            raise core_schema.SchemaNotFound(api)
    except events_schema.EventsSchemaUnavailable as exc:
        what = "object(s) not checked against Argo Events' schema"
        report.unchecked("argo-events-schema", what, item.label, str(exc))
    except crd_schema.CRDSchemaUnavailable as exc:
        release = exc.entry.release
        what = f"object(s) not checked against {release.project}'s schema"
        report.unchecked(f"{release.slug}-schema", what, item.label, str(exc))
    except core_schema.SchemaNotFound:
        report.unchecked(
            "unknown-kind",
            "object(s) of a kind lint has no schema for",
            f"{api} {item.label}",
            "their structure is not checked (security and cross-resource checks still ran)",
        )


def check_items(items: Sequence[Loaded], report: LintReport, *, real_linters: bool) -> None:
    """Every check over one set of objects that are deployed together."""
    report.checked += len(items)
    for item in items:
        check_structure(item, report)
        report.findings += _guarded(item, "security", check_security(item))
    check_cross_resource(items, report)
    if real_linters:
        run_real_linters(items, report)


# overlays: what an environment deploys is the overlay's build, not the base


def overlay_folders(paths: Sequence[str | Path]) -> list[Path]:
    """Folders whose kustomization transforms objects from outside itself (``../../base``):
    environment overlays, hand-written or generated. Their build is what a cluster gets."""
    found: set[Path] = set()
    for file in find_files(paths).files:
        if file.name != "kustomization.yaml":
            continue
        try:
            documents = read_documents(file)
        except Unreadable:
            continue  # reported as a parse finding by load()
        document = documents[0] if len(documents) == 1 else None
        resources = document.get("resources") if isinstance(document, dict) else None
        if isinstance(resources, list) and any(
            isinstance(r, str) and r.startswith("../") for r in resources
        ):
            found.add(file.parent)
    return sorted(found)


def lint_overlay(folder: Path, report: LintReport, *, real_linters: bool) -> None:
    """Build ``folder`` with the real kustomize and check what it builds, as one set."""
    from rtflow.verify.kustomize import KustomizeError, KustomizeUnavailable, kustomize_build

    where = f"{folder} (kustomize build)"
    try:
        documents = kustomize_build(folder)
    except KustomizeUnavailable as exc:
        report.unchecked("kustomize", "overlay(s) not built", str(folder), str(exc))
        return
    except KustomizeError as exc:
        report.findings.append(Finding("overlay", str(folder), "", "", one_line(exc)))
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
        warned = len(report.warnings)
        check_items(written, report, real_linters=True)
        report.findings[before:] = [
            _relabel(finding, scratch, where) for finding in report.findings[before:]
        ]
        report.warnings[warned:] = [_relabel(w, scratch, where) for w in report.warnings[warned:]]


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
