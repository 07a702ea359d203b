"""Check Argo Events objects (EventSource, Sensor, EventBus) against Argo Events' own schema,
strictly, as Argo Workflows objects and the CRDs of :mod:`rtflow.verify.crd_schema` are.

The real ``argo-events lint`` does not look for unknown fields (Go's JSON decoding drops them)
and the API server prunes them silently, so a misspelt field (``eventSoureName``) or one in the
wrong place passed lint clean. The schema is ``api/jsonschema/schema.json`` of the Go module
``github.com/argoproj/argo-events`` at :data:`VERSION`, the release the ``argo-events-lint``
binary is built from (``tools/argo-events-lint/go.mod``), which ``tools/argo_schemas.py``
(run by ``tools/provision.sh``) writes as ``argo-events-<version>.schema.json`` into the schemas
folder (``$RTFLOW_CRD_SCHEMAS``, else the tools folder's ``schemas/``, see
:mod:`rtflow.verify.tools_home`); ``$RTFLOW_ARGO_EVENTS_SCHEMA`` may name the file itself.

Strict as :func:`rtflow.verify.jsonschema_strict.forbid_unknown_fields` makes it: every object
schema that lists its properties forbids others (free-form objects such as a k8s trigger's
``source.resource`` list none, and stay free). IntOrString and Quantity are typed as strings
upstream but Kubernetes also takes numbers (``cpu: 1``), so both are widened. ``apiVersion`` and
``kind`` are constants in the schema, so a wrong one is a finding too.
"""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]

from rtflow.verify import crd_schema, tools_home
from rtflow.verify.argo_linters import LinterError
from rtflow.verify.crd_schema import SchemaFinding
from rtflow.verify.jsonschema_strict import forbid_unknown_fields

MODULE = "github.com/argoproj/argo-events"
VERSION = "v1.9.11"
FILE = f"argo-events-{VERSION}.schema.json"
ENV_VAR = "RTFLOW_ARGO_EVENTS_SCHEMA"  # the schema file itself
PROVISION_SCRIPT = "tools/provision.sh"
KINDS = ("EventSource", "Sensor", "EventBus")
API_GROUP = "argoproj.io"
_WIDEN = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": ["string", "integer"],
    "io.k8s.apimachinery.pkg.api.resource.Quantity": ["string", "number"],
}


class EventsSchemaUnavailable(LinterError):
    """The Argo Events schema is not where rtflow looks; the message says how to write it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        advice = tools_home.provision_advice(
            PROVISION_SCRIPT, f"schemas/{FILE}", "Go and the Go module proxy", looked_at()
        )
        super().__init__(
            f"Argo Events' schema ({MODULE}@{VERSION} api/jsonschema/schema.json) is not "
            f"available: {reason}; {advice}, or set {ENV_VAR} to the file"
        )


def is_events(document: Mapping[str, Any]) -> bool:
    """An Argo Events object: an argoproj.io EventSource, Sensor or EventBus."""
    group = str(document.get("apiVersion", "")).split("/", 1)[0]
    return group == API_GROUP and document.get("kind") in KINDS


def looked_at() -> Path:
    """Where the schema file should be: ``$RTFLOW_ARGO_EVENTS_SCHEMA``, else in the schemas
    folder."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return crd_schema.schemas_root() / FILE


def schema_path() -> Path:
    """The schema file; it must exist."""
    path = looked_at()
    if os.environ.get(ENV_VAR):
        if not path.is_file():
            raise EventsSchemaUnavailable(f"{ENV_VAR}={path} is not a file")
        return path
    if not path.is_file():
        moved = f" ({crd_schema.ENV_VAR} is set)" if os.environ.get(crd_schema.ENV_VAR) else ""
        raise EventsSchemaUnavailable(f"{path} does not exist{moved}")
    return path


@functools.cache
def _validators(path: Path) -> dict[str, Any]:
    """One validator per kind, each the kind's definition with the whole (strict) schema."""
    try:
        schema = copy.deepcopy(json.loads(path.read_text(encoding="utf-8")))
        definitions = schema["definitions"]
        roots = [ref["$ref"] for ref in schema["oneOf"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EventsSchemaUnavailable(f"{path} is not Argo Events' schema ({exc})") from None
    forbid_unknown_fields(schema)
    for name, types in _WIDEN.items():
        if name in definitions:
            definitions[name] = {
                **{k: v for k, v in definitions[name].items() if k not in ("type", "format")},
                "type": types,
            }
    validators = {}
    for ref in roots:
        kind = ref.rsplit(".", 1)[-1]
        # Upstream names no draft it conforms to ("http://json-schema.org/schema#"); the
        # keywords it uses mean the same in draft 7 and 2020-12.
        validators[kind] = jsonschema.Draft202012Validator(
            {"$ref": ref, "definitions": definitions}
        )
    missing = set(KINDS) - validators.keys()
    if missing:
        raise EventsSchemaUnavailable(f"{path} defines no {', '.join(sorted(missing))}")
    return validators


def findings(document: Mapping[str, Any]) -> list[SchemaFinding]:
    """Every problem of an Argo Events ``document``, by its own kind, sorted by field.

    Raises :class:`EventsSchemaUnavailable` when the schema is not provisioned, and ValueError
    for a document that is none of :data:`KINDS`.
    """
    if not is_events(document):
        raise ValueError(f"{document.get('apiVersion')} {document.get('kind')} is not Argo Events")
    validator = _validators(schema_path())[str(document["kind"])]
    found = {
        f
        for error in validator.iter_errors(dict(document))
        for f in crd_schema.schema_findings(error)
    }
    return sorted(found, key=lambda f: (f.path, f.message))


def errors(document: Mapping[str, Any]) -> list[str]:
    """``document``'s problems, one line each, starting with the field's path."""
    return [f.line() for f in findings(document)]
