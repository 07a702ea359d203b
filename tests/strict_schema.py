"""Strict validation against the upstream Argo JSON schemas, which tools/provision.sh copies
out of the pinned Go modules into .tools/schemas (tools/argo_schemas.py), and against the
upstream CRD schemas of the custom resources rtflow.verify.crd_schema knows (Argo CD, KEDA,
Strimzi, prometheus-operator; tools/crd_schemas.py).

The published schemas allow unknown fields; a strict check adds ``additionalProperties: false``
to every object schema that lists properties, so a misspelt or misplaced field fails here the
way the API server's structural schema would prune it silently. IntOrString and Quantity are
typed as plain strings upstream, while Kubernetes also accepts numbers: those two are widened.
"""

from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
from components import component_missing

from rtflow.verify import crd_schema
from rtflow.verify.jsonschema_strict import forbid_unknown_fields

SCHEMAS = Path(__file__).resolve().parents[1] / ".tools" / "schemas"
WORKFLOWS = "argo-workflows-v4.1.4.schema.json"
EVENTS = "argo-events-v1.9.11.schema.json"
_WIDEN = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": ["string", "integer"]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": ["string", "number"]},
}


def schema_path(name: str) -> Path:
    return SCHEMAS / name


# Shared with rtflow.verify.crd_schema (the upstream CRD schemas): adds additionalProperties:
# false to every object schema that lists properties.
_strict = forbid_unknown_fields


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path(name).read_text(encoding="utf-8"))
    schema = copy.deepcopy(schema)
    _strict(schema)
    for definition, replacement in _WIDEN.items():
        if definition in schema["definitions"]:
            schema["definitions"][definition] = {
                **{k: v for k, v in schema["definitions"][definition].items() if k != "type"},
                **replacement,
            }
    # Argo Events names the unversioned "http://json-schema.org/schema#"; both files only use
    # keywords that mean the same in draft 7 and 2020-12, so the latest draft reads them.
    schema.pop("$schema", None)
    return jsonschema.Draft202012Validator(schema)


def _definition_for(name: str, kind: str) -> dict[str, Any]:
    schema = _validator(name).schema
    for ref in schema.get("oneOf", []):
        key = ref["$ref"].rsplit("/", 1)[-1]
        if key.rsplit(".", 1)[-1] == kind:
            return {"$ref": ref["$ref"], "definitions": schema["definitions"]}
    raise KeyError(f"{kind} is not a top-level kind of {name}")


EVENTS_KINDS = frozenset({"EventSource", "Sensor", "EventBus"})
WORKFLOWS_KINDS = frozenset(
    {"WorkflowTemplate", "Workflow", "CronWorkflow", "ClusterWorkflowTemplate"}
)


def errors_any(document: dict[str, Any]) -> list[str]:
    """Route a generated document to its strict check: the Argo schemas, its upstream CRD's
    schema (a missing one skips the test, or fails it under CI=true), or kubernetes-validate."""
    kind = document["kind"]
    if kind in WORKFLOWS_KINDS:
        return errors(document, WORKFLOWS)
    if kind in EVENTS_KINDS:
        return errors(document, EVENTS)
    if crd_schema.is_known(document):
        try:
            return crd_schema.errors(document)
        except crd_schema.CRDSchemaUnavailable as exc:
            component_missing(str(exc))
    import kubernetes_validate

    try:
        kubernetes_validate.validate(document, "1.29", strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [str(exc)]
    return []


def errors(document: dict[str, Any], schema_name: str = WORKFLOWS) -> list[str]:
    """Every violation, as 'path: message', validating against the document's own kind."""
    validator = _validator(schema_name)
    target = _definition_for(schema_name, document["kind"])
    found = type(validator)(target).iter_errors(document)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found)
