"""Check Argo CD Applications and ApplicationSets against Argo CD's own schema, strictly.

The schemas are the ``openAPIV3Schema`` of Argo CD's CRDs (``applications.argoproj.io`` and
``applicationsets.argoproj.io``, version v1alpha1) at the release pinned in
``tools/argocd_schemas.py``, which ``tools/provision.sh`` writes as JSON Schema files into
``<repo>/.tools/schemas/argo-cd-<version>/`` (or the folder ``$RTFLOW_ARGOCD_SCHEMAS`` names).
When they are not there, :class:`ArgoCDSchemaUnavailable` says where rtflow looked and how to
write them.

Strict: every object schema that lists its properties gets ``additionalProperties: false``
(:func:`rtflow.verify.jsonschema_strict.forbid_unknown_fields`), so an unknown or misplaced
field is a finding instead of being pruned by the API server. The CRD schema says nothing of
``apiVersion``, ``kind`` and ``metadata`` beyond their types; those are checked here: the
apiVersion and kind, a ``metadata.name``, and ``metadata`` against Kubernetes' ObjectMeta
(kubernetes-validate, strict).
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]

from rtflow.verify import KUBERNETES_VERSION
from rtflow.verify.argo_linters import LinterError
from rtflow.verify.jsonschema_strict import forbid_unknown_fields

# sdk/verify/argocd_schema.py -> the repository root, where provisioning writes .tools/.
_REPO_ROOT = Path(__file__).resolve().parents[2]
ARGO_CD_MODULE = "github.com/argoproj/argo-cd/v3"
ARGO_CD_VERSION = "v3.2.0"  # the same pin as tools/argocd_schemas.py
SCHEMA_DIR = _REPO_ROOT / ".tools" / "schemas" / f"argo-cd-{ARGO_CD_VERSION}"
ENV_VAR = "RTFLOW_ARGOCD_SCHEMAS"
PROVISION_SCRIPT = "tools/provision.sh"
API_VERSION = "argoproj.io/v1alpha1"
SCHEMA_FILES = {
    "Application": "application.schema.json",
    "ApplicationSet": "applicationset.schema.json",
}
KINDS = tuple(SCHEMA_FILES)
_MAX_MESSAGE = 240


class ArgoCDSchemaUnavailable(LinterError):
    """Argo CD's schema is not where rtflow looks for it; the message says how to write it."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason
        super().__init__(
            f"Argo CD's {kind} schema ({ARGO_CD_MODULE}@{ARGO_CD_VERSION}) is not available: "
            f"{reason}; write it with `{PROVISION_SCRIPT}` (needs Go and the Go module proxy; "
            f"it writes {SCHEMA_DIR}), or set {ENV_VAR} to a folder holding "
            f"{SCHEMA_FILES.get(kind, ', '.join(SCHEMA_FILES.values()))}"
        )


@dataclass(frozen=True)
class SchemaFinding:
    """One problem: where in the object (``spec.syncPolicy.retry.limit``) and what."""

    path: str
    message: str

    def line(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def schema_dir() -> Path:
    """Where the schema files are: ``$RTFLOW_ARGOCD_SCHEMAS``, else .tools/schemas."""
    override = os.environ.get(ENV_VAR)
    return Path(override) if override else SCHEMA_DIR


def schema_path(kind: str) -> Path:
    """The schema file of ``kind`` (Application or ApplicationSet); it must exist."""
    if kind not in SCHEMA_FILES:
        raise ValueError(f"{kind!r} is not one of the Argo CD kinds {', '.join(KINDS)}")
    path = schema_dir() / SCHEMA_FILES[kind]
    if not path.is_file():
        source = f" ({ENV_VAR} is set)" if os.environ.get(ENV_VAR) else ""
        raise ArgoCDSchemaUnavailable(kind, f"{path} does not exist{source}")
    return path


def is_argocd(document: Mapping[str, Any]) -> bool:
    """An Argo CD object this module checks: an argoproj.io Application or ApplicationSet."""
    api_version = str(document.get("apiVersion", ""))
    return document.get("kind") in SCHEMA_FILES and api_version.startswith("argoproj.io/")


@functools.cache
def _validator(path: Path) -> Any:
    schema = json.loads(path.read_text(encoding="utf-8"))
    schema = copy.deepcopy(schema)
    forbid_unknown_fields(schema)
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


def _schema_findings(error: Any) -> Iterator[SchemaFinding]:
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


def _metadata_findings(metadata: Any, kind: str) -> list[SchemaFinding]:
    if not isinstance(metadata, Mapping):
        return [SchemaFinding("metadata", "required, and must be a map")]
    found: list[SchemaFinding] = []
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        found.append(SchemaFinding("metadata.name", f"an Argo CD {kind} needs a name"))
    import kubernetes_validate

    # The ObjectMeta of a core kind (ConfigMap: nothing else is required), strict.
    probe = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(metadata)}
    try:
        kubernetes_validate.validate(probe, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # It reports the first problem only; its path starts at metadata, as here.
        found += _schema_findings(exc)
    return found


def findings(document: Mapping[str, Any], kind: str | None = None) -> list[SchemaFinding]:
    """Every problem of an Argo CD ``document``, checked as ``kind`` (default: its own kind).

    Raises :class:`ArgoCDSchemaUnavailable` when the schema of that kind is not provisioned.
    """
    expected = kind or str(document.get("kind"))
    validator = _validator(schema_path(expected))
    found: list[SchemaFinding] = []
    if document.get("apiVersion") != API_VERSION:
        found.append(
            SchemaFinding("apiVersion", f"{document.get('apiVersion')!r} is not {API_VERSION!r}")
        )
    if document.get("kind") != expected:
        found.append(SchemaFinding("kind", f"{document.get('kind')!r} is not {expected!r}"))
    found += _metadata_findings(document.get("metadata"), expected)
    schema_found = {
        f for error in validator.iter_errors(dict(document)) for f in _schema_findings(error)
    }
    found += sorted(schema_found, key=lambda f: (f.path, f.message))
    return found


def application_errors(document: Mapping[str, Any]) -> list[str]:
    """An Argo CD Application's problems, one line each, starting with the field's path."""
    return [f.line() for f in findings(document, "Application")]


def errors(document: Mapping[str, Any]) -> list[str]:
    """Like :func:`application_errors`, for an Application or an ApplicationSet by its kind."""
    return [f.line() for f in findings(document)]
