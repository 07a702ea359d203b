"""Least-privilege RBAC for what a pipeline runs: each identity gets exactly what it uses.

* The Sensor's ServiceAccount may create Workflows in its own namespace: its k8s trigger does
  nothing else.
* The Workflow's ServiceAccount (when rtflow owns it) gets what the Argo executor in every pod
  needs to report results, ``workflowtaskresults`` create and patch; and, when the pipeline has
  inference (``http``) steps or ``rtflow.http`` steps, what the Argo agent that runs them needs:
  ``workflowtasksets`` list and watch, and patch of their status; and ``get`` on exactly the
  Secrets an http step's ``secret_headers`` name (the agent reads them when it calls). Nothing
  more.

ServiceAccounts do not mount their token unless the pod needs it: the sensor does (it calls the
API server), and so does every workflow pod (the executor does).

Argo's agent pod is the exception: the controller does not let the API server mount a token
into it, but mounts the Secret ``<serviceaccount>.service-account-token`` itself, which since
Kubernetes 1.24 nobody creates unless asked. Without it the agent pod never starts and every
http step waits forever (found by running the compiled template on the real controller,
tests/integration/test_execution_tier.py). So a pipeline with http steps whose ServiceAccount
rtflow owns also gets that Secret, empty, of type ``kubernetes.io/service-account-token``:
the cluster's token controller fills it.
"""

from __future__ import annotations

from typing import Any

from rtflow import ir
from rtflow.generators import labels
from rtflow.generators.events import sensor_service_account

Document = dict[str, Any]
ARGO_GROUP = "argoproj.io"


def _metadata(pipeline: ir.Pipeline, name: str, component: str) -> Document:
    metadata: Document = {"name": name}
    if pipeline.namespace:
        metadata["namespace"] = pipeline.namespace
    metadata["labels"] = labels.standard_labels(pipeline, component)
    return metadata


def _identity(
    pipeline: ir.Pipeline, name: str, component: str, rules: list[Document]
) -> list[Document]:
    subject: Document = {"kind": "ServiceAccount", "name": name}
    if pipeline.namespace:
        subject["namespace"] = pipeline.namespace
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(pipeline, name, component),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(pipeline, name, component),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(pipeline, name, component),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [subject],
        },
    ]


def agent_token_secret(pipeline: ir.Pipeline, account: str) -> Document:
    """The token Secret Argo's agent pod mounts (``<account>.service-account-token``)."""
    metadata = _metadata(pipeline, f"{account}.service-account-token", "workflow")
    metadata["annotations"] = {"kubernetes.io/service-account.name": account}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/service-account-token",
        "metadata": metadata,
    }


def documents(pipeline: ir.Pipeline) -> list[Document]:
    docs: list[Document] = []
    if pipeline.owns_service_account and pipeline.service_account:
        rules: list[Document] = [
            {
                "apiGroups": [ARGO_GROUP],
                "resources": ["workflowtaskresults"],
                "verbs": ["create", "patch"],
            }
        ]
        if _http_steps(pipeline):
            # The agent pod that runs http templates reads its tasks and reports on them.
            rules += [
                {
                    "apiGroups": [ARGO_GROUP],
                    "resources": ["workflowtasksets"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": [ARGO_GROUP],
                    "resources": ["workflowtasksets/status"],
                    "verbs": ["patch"],
                },
            ]
        secrets = sorted(
            {
                h.secret.secret
                for stage in pipeline.stages
                if stage.http is not None
                for h in stage.http.headers
                if h.secret is not None
            }
        )
        if secrets:
            # The agent reads an http step's secret headers itself, when it calls: only those.
            rules.append(
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": secrets,
                 "verbs": ["get"]}
            )  # fmt: skip
        docs += _identity(pipeline, pipeline.service_account, "workflow", rules)
        if any(stage.kind in ("inference", "http") for stage in pipeline.stages):
            docs.append(agent_token_secret(pipeline, pipeline.service_account))
    if pipeline.triggers:
        docs += _identity(
            pipeline,
            sensor_service_account(pipeline),
            "sensor",
            [{"apiGroups": [ARGO_GROUP], "resources": ["workflows"], "verbs": ["create"]}],
        )
    return docs


def _http_steps(pipeline: ir.Pipeline) -> bool:
    """Whether Argo's agent runs steps of this pipeline (inference or any URL, over http)."""
    return any(s.inference is not None or s.http is not None for s in pipeline.stages)
