"""How large an object the Kubernetes API server stores: one limit for compile and lint.

etcd refuses a request over ``--max-request-bytes``, 1.5 MiB by default (and on every managed
cluster rtflow knows of); the API server stores a custom resource as JSON, so the object's
compact JSON is what counts. A WorkflowTemplate of a few thousand stages passes that line; it
then fails at sync in Argo CD, far from its cause, unless compile and lint say so.
"""

from __future__ import annotations

import json
from typing import Any

MAX_OBJECT_BYTES = 1_572_864  # 1.5 MiB
SPLIT_HINT = (
    "split the pipeline into several WorkflowTemplates (a stage can call another template with "
    "templateRef) or move large literals into a ConfigMap"
)


def object_bytes(body: dict[str, Any]) -> int:
    """The size of the object as the API server stores it (compact JSON)."""
    return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def too_large(body: dict[str, Any]) -> str | None:
    """Why the API server would refuse ``body`` for its size, or None."""
    size = object_bytes(body)
    if size <= MAX_OBJECT_BYTES:
        return None
    return (
        f"is {size / 2**20:.2f} MiB as JSON, over the {MAX_OBJECT_BYTES / 2**20:g} MiB that the "
        "API server (etcd) stores"
    )
