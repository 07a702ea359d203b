"""Make a published JSON schema strict: unknown fields become errors.

Upstream schemas (the Argo JSON schemas, the openAPIV3Schema of CRDs) allow unknown fields: the
API server prunes them silently, so a misspelt or misplaced field is lost without a word. The
strict form adds ``additionalProperties: false`` to every object schema that lists its
``properties``, unless it already says what to do with other keys (``additionalProperties``) or
keeps them on purpose (``x-kubernetes-preserve-unknown-fields: true``, e.g. Helm values).
"""

from __future__ import annotations

from typing import Any

PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"


def forbid_unknown_fields(node: Any) -> None:
    """Close, in place, every object schema in ``node`` that lists properties (see above)."""
    if isinstance(node, dict):
        if (
            node.get("type") == "object"
            and "properties" in node
            and node.get(PRESERVE_UNKNOWN) is not True
        ):
            node.setdefault("additionalProperties", False)
        for value in node.values():
            forbid_unknown_fields(value)
    elif isinstance(node, list):
        for value in node:
            forbid_unknown_fields(value)
