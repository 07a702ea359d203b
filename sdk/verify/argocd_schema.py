"""Check Argo CD Applications and ApplicationSets against Argo CD's own schema, strictly.

The schemas are the ``openAPIV3Schema`` of Argo CD's CRDs (``applications.argoproj.io`` and
``applicationsets.argoproj.io``, version v1alpha1) at the release pinned in
``tools/crd_schemas.py``, which ``tools/provision.sh`` writes as JSON Schema files into
``<repo>/.tools/schemas/argo-cd-<version>/`` (or the folder ``$RTFLOW_ARGOCD_SCHEMAS`` names).
When they are not there, :class:`ArgoCDSchemaUnavailable` says where rtflow looked and how to
write them.

The check is :mod:`rtflow.verify.crd_schema`'s, which holds every upstream CRD schema rtflow
checks against (strict: an unknown or misplaced field is a finding; ``apiVersion``, ``kind``,
``metadata.name`` and ObjectMeta are checked too); this module names its Argo CD part.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rtflow.verify import crd_schema
from rtflow.verify.crd_schema import CRDSchemaUnavailable, SchemaFinding

__all__ = [
    "API_VERSION",
    "ARGO_CD_MODULE",
    "ARGO_CD_VERSION",
    "ENV_VAR",
    "KINDS",
    "PROVISION_SCRIPT",
    "SCHEMA_DIR",
    "SCHEMA_FILES",
    "ArgoCDSchemaUnavailable",
    "SchemaFinding",
    "application_errors",
    "errors",
    "findings",
    "is_argocd",
    "schema_dir",
    "schema_path",
]

ARGO_CD_MODULE = "github.com/argoproj/argo-cd/v3"
ARGO_CD_VERSION = crd_schema.ARGO_CD.version
SCHEMA_DIR = crd_schema.ARGO_CD.default_dir
ENV_VAR = str(crd_schema.ARGO_CD.env_var)
PROVISION_SCRIPT = crd_schema.PROVISION_SCRIPT
API_VERSION = "argoproj.io/v1alpha1"
_ENTRIES = {k.kind: k for k in crd_schema.KINDS.values() if k.release is crd_schema.ARGO_CD}
SCHEMA_FILES = {kind: entry.file for kind, entry in _ENTRIES.items()}
KINDS = tuple(SCHEMA_FILES)


class ArgoCDSchemaUnavailable(CRDSchemaUnavailable):
    """Argo CD's schema is not where rtflow looks for it; the message says how to write it."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(_ENTRIES.get(kind, _ENTRIES["Application"]), reason)
        self.kind = kind


def schema_dir() -> Path:
    """Where the schema files are: ``$RTFLOW_ARGOCD_SCHEMAS``, else .tools/schemas."""
    return crd_schema.ARGO_CD.directory()


def schema_path(kind: str) -> Path:
    """The schema file of ``kind`` (Application or ApplicationSet); it must exist."""
    if kind not in _ENTRIES:
        raise ValueError(f"{kind!r} is not one of the Argo CD kinds {', '.join(KINDS)}")
    try:
        return crd_schema.schema_path(_ENTRIES[kind])
    except CRDSchemaUnavailable as exc:
        raise ArgoCDSchemaUnavailable(kind, exc.reason) from None


def is_argocd(document: Mapping[str, Any]) -> bool:
    """An Argo CD object this module checks: an argoproj.io Application or ApplicationSet."""
    entry = crd_schema.lookup(document)
    return entry is not None and entry.release is crd_schema.ARGO_CD


def findings(document: Mapping[str, Any], kind: str | None = None) -> list[SchemaFinding]:
    """Every problem of an Argo CD ``document``, checked as ``kind`` (default: its own kind).

    Raises :class:`ArgoCDSchemaUnavailable` when the schema of that kind is not provisioned.
    """
    expected = kind or str(document.get("kind"))
    schema_path(expected)  # the Argo CD error when it is missing
    return crd_schema.findings(document, expected)


def application_errors(document: Mapping[str, Any]) -> list[str]:
    """An Argo CD Application's problems, one line each, starting with the field's path."""
    return [f.line() for f in findings(document, "Application")]


def errors(document: Mapping[str, Any]) -> list[str]:
    """Like :func:`application_errors`, for an Application or an ApplicationSet by its kind."""
    return [f.line() for f in findings(document)]
