"""Check custom resources against their upstream CRD's own schema, strictly.

The schemas are the ``openAPIV3Schema`` of the served version of each upstream
CustomResourceDefinition, at the releases pinned in ``tools/crd_schemas.py``, which
``tools/provision.sh`` writes as JSON Schema files into
``<tools>/schemas/<project>-<version>/<kind>.schema.json`` (``<tools>`` is the tools folder of
:mod:`rtflow.verify.tools_home`, ``<checkout>/.tools`` by default), or under the folder
``$RTFLOW_CRD_SCHEMAS`` names. When one is not there, :class:`CRDSchemaUnavailable` says where
rtflow looked and how to write it. The kinds (:data:`KINDS`):

* Argo CD ``Application``, ``ApplicationSet`` (argoproj.io/v1alpha1; also
  :mod:`rtflow.verify.argocd_schema`, whose folder ``$RTFLOW_ARGOCD_SCHEMAS`` may name);
* KEDA ``ScaledObject``, ``TriggerAuthentication`` (keda.sh/v1alpha1);
* Strimzi ``KafkaTopic`` (kafka.strimzi.io/v1);
* prometheus-operator ``PodMonitor``, ``ServiceMonitor``, ``PrometheusRule``
  (monitoring.coreos.com/v1).

Strict, as the API server's structural schema is, except that what it would prune silently is a
finding: every object schema that lists its properties gets ``additionalProperties: false``
(:func:`rtflow.verify.jsonschema_strict.forbid_unknown_fields`), unless it keeps unknown fields
on purpose (``x-kubernetes-preserve-unknown-fields: true``, e.g. a KafkaTopic's ``config``) or
says what other keys hold (a map). ``x-kubernetes-int-or-string`` is an integer or a string.
CEL rules (``x-kubernetes-validations``) are not evaluated. The CRD schema says nothing of
``apiVersion``, ``kind`` and ``metadata`` beyond their types; those are checked here: the
apiVersion the release serves, the kind, a ``metadata.name``, and ``metadata`` against
Kubernetes' ObjectMeta (kubernetes-validate, strict).
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]

from rtflow.verify import core_schema, tools_home
from rtflow.verify.argo_linters import LinterError
from rtflow.verify.jsonschema_strict import forbid_unknown_fields

ENV_VAR = "RTFLOW_CRD_SCHEMAS"  # a folder holding the <project>-<version>/ folders
PROVISION_SCRIPT = "tools/provision.sh"
INT_OR_STRING = "x-kubernetes-int-or-string"
_GO = "Go and the Go module proxy"
_MAX_MESSAGE = 240


def schemas_root() -> Path:
    """The folder holding every release's schema folder: ``$RTFLOW_CRD_SCHEMAS``, else the
    tools folder's ``schemas/``."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return tools_home.find().schemas


@dataclass(frozen=True)
class Release:
    """One pinned upstream release whose CRD schemas tools/crd_schemas.py writes to a folder."""

    project: str  # as people write it: "Argo CD"
    article: str  # "an Argo CD Application", "a KEDA ScaledObject"
    slug: str  # the folder's prefix, and how lint names it: "argo-cd"
    version: str
    source: str  # where the schemas come from
    needs: str  # what provisioning them needs
    env_var: str | None = None  # a variable naming this release's own folder, if it has one

    @property
    def folder(self) -> str:
        return f"{self.slug}-{self.version}"

    @property
    def default_dir(self) -> Path:
        """Where provisioning writes it: in the tools folder (found when asked)."""
        return schemas_root() / self.folder

    def directory(self) -> Path:
        """Its own variable's folder, else ``$RTFLOW_CRD_SCHEMAS/<folder>``, else .tools."""
        if self.env_var and os.environ.get(self.env_var):
            return Path(os.environ[self.env_var])
        return schemas_root() / self.folder

    def overridden(self) -> str | None:
        """The variable that moved its folder, if one did."""
        for name in (self.env_var, ENV_VAR):
            if name and os.environ.get(name):
                return name
        return None


@dataclass(frozen=True)
class CRDKind:
    """A kind rtflow checks: the apiVersion its release serves, and where its schema is."""

    release: Release
    api_version: str
    kind: str

    @property
    def group(self) -> str:
        return self.api_version.split("/", 1)[0]

    @property
    def file(self) -> str:
        return f"{self.kind.lower()}.schema.json"


ARGO_CD = Release(
    "Argo CD",
    "an",
    "argo-cd",
    "v3.2.0",
    "github.com/argoproj/argo-cd/v3@v3.2.0",
    _GO,
    env_var="RTFLOW_ARGOCD_SCHEMAS",
)
KEDA = Release("KEDA", "a", "keda", "v2.21.0", "github.com/kedacore/keda/v2@v2.21.0", _GO)
PROMETHEUS_OPERATOR = Release(
    "prometheus-operator",
    "a",
    "prometheus-operator",
    "v0.85.0",
    "github.com/prometheus-operator/prometheus-operator@v0.85.0",
    _GO,
)
STRIMZI = Release(
    "Strimzi",
    "a",
    "strimzi",
    "1.2.0",
    "io.strimzi:crd-generator:1.2.0 run on io.strimzi:api:1.2.0 (Maven Central)",
    "java 21+, mvn and Maven Central",
)
RELEASES = (ARGO_CD, KEDA, PROMETHEUS_OPERATOR, STRIMZI)
# The same pins and served versions as tools/crd_schemas.py (tests/test_crd_schemas.py compares).
KINDS: dict[tuple[str, str], CRDKind] = {
    (k.group, k.kind): k
    for k in (
        CRDKind(ARGO_CD, "argoproj.io/v1alpha1", "Application"),
        CRDKind(ARGO_CD, "argoproj.io/v1alpha1", "ApplicationSet"),
        CRDKind(KEDA, "keda.sh/v1alpha1", "ScaledObject"),
        CRDKind(KEDA, "keda.sh/v1alpha1", "TriggerAuthentication"),
        CRDKind(STRIMZI, "kafka.strimzi.io/v1", "KafkaTopic"),
        CRDKind(PROMETHEUS_OPERATOR, "monitoring.coreos.com/v1", "PodMonitor"),
        CRDKind(PROMETHEUS_OPERATOR, "monitoring.coreos.com/v1", "ServiceMonitor"),
        CRDKind(PROMETHEUS_OPERATOR, "monitoring.coreos.com/v1", "PrometheusRule"),
    )
}


class CRDSchemaUnavailable(LinterError):
    """A CRD schema is not where rtflow looks for it; the message says how to write it."""

    def __init__(self, entry: CRDKind, reason: str) -> None:
        self.entry = entry
        self.kind = entry.kind
        self.reason = reason
        release = entry.release
        if release.env_var:
            elsewhere = f"set {release.env_var} to a folder holding {entry.file}"
        else:
            elsewhere = f"set {ENV_VAR} to a folder holding {release.folder}/{entry.file}"
        advice = tools_home.provision_advice(
            PROVISION_SCRIPT, f"schemas/{release.folder}", release.needs, release.directory()
        )
        super().__init__(
            f"{release.project}'s {entry.kind} schema ({release.source}) is not available: "
            f"{reason}; {advice}, or {elsewhere}"
        )


@dataclass(frozen=True)
class SchemaFinding:
    """One problem: where in the object (``spec.triggers[0].metadata``) and what."""

    path: str
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def lookup(document: Mapping[str, Any]) -> CRDKind | None:
    """The checked kind ``document`` is, by its API group and kind (any version of the group:
    a version the release does not serve is then a finding), or None."""
    group = str(document.get("apiVersion", "")).split("/", 1)[0]
    return KINDS.get((group, str(document.get("kind"))))


def is_known(document: Mapping[str, Any]) -> bool:
    """A custom resource this module checks (see :data:`KINDS`)."""
    return lookup(document) is not None


def entry_for(kind: str) -> CRDKind:
    """The checked kind named ``kind`` (kind names are unique across :data:`KINDS`)."""
    for entry in KINDS.values():
        if entry.kind == kind:
            return entry
    raise ValueError(f"{kind!r} is not one of {', '.join(k.kind for k in KINDS.values())}")


def schema_path(entry: CRDKind) -> Path:
    """The schema file of ``entry``; it must exist."""
    path = entry.release.directory() / entry.file
    if not path.is_file():
        moved = entry.release.overridden()
        raise CRDSchemaUnavailable(
            entry, f"{path} does not exist" + (f" ({moved} is set)" if moved else "")
        )
    return path


_GO_FLAGS = re.compile(r"\(\?[ims]+\)")  # Go's U (ungreedy) has no Python equivalent


def _group_end(pattern: str, start: int) -> int:
    """Where the group open at ``start`` closes (its ``)``), or the pattern's end; -1 when the
    rest of the group is an alternation (``a(?i)b|c``: Go's flags cover ``c`` too)."""
    depth, index, in_class = 0, start, False
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            index += 2 if pattern[index + 1 : index + 2] == "]" else 1
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            if depth == 0:
                return index
            depth -= 1
        elif char == "|" and depth == 0:
            return -1
        index += 1
    return len(pattern)


def go_pattern(pattern: str) -> str:
    """A CRD's ``pattern`` (Go's RE2 syntax) as Python's ``re`` reads it.

    RE2 takes a flag group like ``(?i)`` anywhere, for the rest of its group
    (prometheus-operator writes ``^(?i)(abort|warn)?$``); Python takes it only at the start.
    Such a group becomes a scoped one, ``^(?i:(abort|warn)?$)``. Anything else is unchanged.
    """
    for found in _GO_FLAGS.finditer(pattern):
        if found.start() == 0 or pattern[found.start() - 1] == "\\":
            continue
        end = _group_end(pattern, found.end())
        if end < 0:
            return pattern
        flags = found.group()[2:-1]
        rest = pattern[found.end() : end]
        return go_pattern(f"{pattern[: found.start()]}(?{flags}:{rest}){pattern[end:]}")
    return pattern


def _kubernetes_semantics(node: Any) -> None:
    """Give, in place, what a JSON Schema validator does not know its meaning: an
    ``x-kubernetes-int-or-string`` schema without a type is an integer or a string, and a
    ``pattern`` is RE2."""
    if isinstance(node, dict):
        if node.get(INT_OR_STRING) is True and not {"type", "anyOf", "oneOf"} & node.keys():
            node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
        if isinstance(node.get("pattern"), str):
            node["pattern"] = go_pattern(node["pattern"])
        for value in node.values():
            _kubernetes_semantics(value)
    elif isinstance(node, list):
        for value in node:
            _kubernetes_semantics(value)


@functools.cache
def _validator(path: Path) -> Any:
    schema = copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
    forbid_unknown_fields(schema)
    _kubernetes_semantics(schema)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    cls.check_schema(schema)
    return cls(schema)


def _dotted(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _short(message: str) -> str:
    message = " ".join(message.split())
    return message if len(message) <= _MAX_MESSAGE else message[: _MAX_MESSAGE - 1] + "…"


def schema_findings(error: Any) -> Iterator[SchemaFinding]:
    """One jsonschema error as findings located at the field itself where that helps."""
    parts = list(error.absolute_path)
    instance = error.instance
    if error.validator == "additionalProperties" and error.validator_value is False:
        known = error.schema.get("properties") or {}
        for key in instance:
            if key not in known:
                yield SchemaFinding(_dotted([*parts, key]), "unknown field")
        return
    if error.validator == "required" and isinstance(instance, Mapping):
        for key in error.validator_value:
            if key not in instance:
                yield SchemaFinding(_dotted([*parts, key]), "required field is missing")
        return
    yield SchemaFinding(_dotted(parts), _short(error.message))


def _metadata_findings(metadata: Any, entry: CRDKind) -> list[SchemaFinding]:
    if not isinstance(metadata, Mapping):
        return [SchemaFinding("metadata", "required, and must be a map")]
    found: list[SchemaFinding] = []
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        what = f"{entry.release.article} {entry.release.project} {entry.kind}"
        found.append(SchemaFinding("metadata.name", f"{what} needs a name"))
    # The ObjectMeta of a core kind (ConfigMap: nothing else is required), strict.
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(metadata)}
    error = core_schema.first_error(probe)
    if error is not None:
        # The first problem only, as kubernetes-validate reports; its path starts at metadata.
        found += schema_findings(error)
    return found


def findings(document: Mapping[str, Any], kind: str | None = None) -> list[SchemaFinding]:
    """Every problem of ``document``, checked as ``kind`` (default: its own kind).

    Raises :class:`CRDSchemaUnavailable` when that kind's schema is not provisioned, and
    ValueError when the document is none of :data:`KINDS` and no ``kind`` is given.
    """
    entry = entry_for(kind) if kind else lookup(document)
    if entry is None:
        raise ValueError(f"{document.get('apiVersion')} {document.get('kind')} is not checked here")
    validator = _validator(schema_path(entry))
    found: list[SchemaFinding] = []
    if document.get("apiVersion") != entry.api_version:
        found.append(
            SchemaFinding(
                "apiVersion", f"{document.get('apiVersion')!r} is not {entry.api_version!r}"
            )
        )
    if document.get("kind") != entry.kind:
        found.append(SchemaFinding("kind", f"{document.get('kind')!r} is not {entry.kind!r}"))
    found += _metadata_findings(document.get("metadata"), entry)
    schema_found = {
        f for error in validator.iter_errors(dict(document)) for f in schema_findings(error)
    }
    found += sorted(schema_found, key=lambda f: (f.path, f.message))
    return found


def errors(document: Mapping[str, Any]) -> list[str]:
    """``document``'s problems by its own kind, one line each, starting with the field's path."""
    return [f.line() for f in findings(document)]
