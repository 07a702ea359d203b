"""The labels every generated object carries, so a platform team can select, own and prune them."""

from __future__ import annotations

from rtflow import ir

MANAGED_BY = "rtflow"
NAME = "app.kubernetes.io/name"
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY_KEY = "app.kubernetes.io/managed-by"
COMPONENT = "app.kubernetes.io/component"
PIPELINE = "rtflow.dev/pipeline"
STAGE = "rtflow.dev/stage"
TRIGGER = "rtflow.dev/trigger"
LATENCY_BUDGET = "rtflow.dev/latency-budget-ms"
DESCRIPTION = "workflows.argoproj.io/description"


def standard_labels(pipeline: ir.Pipeline, component: str) -> dict[str, str]:
    """The recommended app.kubernetes.io labels; the user's own labels win where they overlap."""
    labels = {
        NAME: pipeline.name,
        PART_OF: pipeline.name,
        MANAGED_BY_KEY: MANAGED_BY,
        COMPONENT: component,
        PIPELINE: pipeline.name,
    }
    labels.update(dict(pipeline.labels))
    labels[MANAGED_BY_KEY] = MANAGED_BY
    return dict(sorted(labels.items()))
