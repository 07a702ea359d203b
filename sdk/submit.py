"""``rtflow submit``: apply a pipeline's objects and start a Workflow from its template.

Like ``argo submit --from workflowtemplate/NAME``. Two paths:

* Kubernetes API (default): credentials from the kubeconfig (``--kubeconfig``/``KUBECONFIG``/
  ``~/.kube/config``, ``--context``) or the in-cluster service account, loaded by the
  ``kubernetes`` client; every compiled object is server-side applied (field manager ``rtflow``,
  ``force``), then a ``Workflow`` with ``workflowTemplateRef`` is created.
* Argo Server (``--argo-server URL --token-env VAR``): ``POST /api/v1/workflows/{ns}/submit``
  with a bearer token; the objects must already be applied (Argo CD, or the first path).

``--wait`` follows the Workflow's phase until it ends. Every failure is a ``SubmitError`` whose
text is one line: no kubeconfig, server unreachable, 401/403, the Argo CRDs missing (404 on the
argoproj.io group).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import urllib3

from rtflow.errors import RtflowError

FIELD_MANAGER = "rtflow"
# The API groups of the custom resources rtflow compiles, and what installs their CRDs. A real
# API server answers an unknown group with a bare "404 page not found".
CRD_PROVIDERS = {
    "argoproj.io": "Argo Workflows, Argo Events and Argo CD",
    "kafka.strimzi.io": "Strimzi",
    "keda.sh": "KEDA",
    "monitoring.coreos.com": "the Prometheus Operator",
}
DONE_PHASES = ("Succeeded", "Failed", "Error")
# kind -> (API path prefix, plural) for every kind rtflow compiles to.
RESOURCES: dict[str, tuple[str, str]] = {
    "ServiceAccount": ("/api/v1", "serviceaccounts"),
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Role": ("/apis/rbac.authorization.k8s.io/v1", "roles"),
    "RoleBinding": ("/apis/rbac.authorization.k8s.io/v1", "rolebindings"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    "ScaledObject": ("/apis/keda.sh/v1alpha1", "scaledobjects"),
    "TriggerAuthentication": ("/apis/keda.sh/v1alpha1", "triggerauthentications"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "KafkaTopic": ("/apis/kafka.strimzi.io/v1", "kafkatopics"),
    "PodMonitor": ("/apis/monitoring.coreos.com/v1", "podmonitors"),
    "ServiceMonitor": ("/apis/monitoring.coreos.com/v1", "servicemonitors"),
    "PrometheusRule": ("/apis/monitoring.coreos.com/v1", "prometheusrules"),
    "EventBus": ("/apis/argoproj.io/v1alpha1", "eventbus"),
    "EventSource": ("/apis/argoproj.io/v1alpha1", "eventsources"),
    "Sensor": ("/apis/argoproj.io/v1alpha1", "sensors"),
    "WorkflowTemplate": ("/apis/argoproj.io/v1alpha1", "workflowtemplates"),
    "Workflow": ("/apis/argoproj.io/v1alpha1", "workflows"),
}


class SubmitError(RtflowError):
    """A submit that could not be done; one line, exit 2."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to talk HTTP: base URL, headers (the bearer token) and TLS material."""

    base: str
    headers: Mapping[str, str]
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True
    timeout: float = 10.0


def kube_endpoint(kubeconfig: str | None = None, context: str | None = None) -> Endpoint:
    """The Kubernetes API from the kubeconfig, or the in-cluster service account without one."""
    from kubernetes import config
    from kubernetes.client import Configuration

    configuration = Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    path = path.split(os.pathsep)[0]
    try:
        if Path(path).exists():
            load: Any = config.load_kube_config
            load(config_file=path, context=context, client_configuration=configuration)
        elif kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            in_cluster: Any = config.load_incluster_config
            in_cluster(client_configuration=configuration)
        else:
            raise SubmitError(
                f"no kubeconfig at {path} and not running in a cluster; pass --kubeconfig, "
                "set KUBECONFIG, or use --argo-server URL --token-env VAR"
            )
    except config.ConfigException as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SubmitError(f"kubeconfig {path}: {first}") from None
    headers = {}
    token = configuration.api_key.get("authorization") or configuration.api_key.get("BearerToken")
    if token:
        headers["Authorization"] = token if token.startswith("Bearer ") else f"Bearer {token}"
    return Endpoint(
        base=configuration.host.rstrip("/"),
        headers=headers,
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        verify=bool(configuration.verify_ssl),
    )


class Http:
    """A small JSON-over-HTTP client whose errors are one-line SubmitErrors."""

    def __init__(self, endpoint: Endpoint, *, what: str) -> None:
        self.endpoint = endpoint
        self.what = what
        self.pool = urllib3.PoolManager(
            ca_certs=endpoint.ca_file,
            cert_file=endpoint.cert_file,
            key_file=endpoint.key_file,
            cert_reqs="CERT_REQUIRED" if endpoint.verify else "CERT_NONE",
            retries=False,
            timeout=urllib3.Timeout(total=endpoint.timeout),
        )

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        content_type: str = "application/json",
        query: Mapping[str, str] | None = None,
    ) -> Any:
        url = self.endpoint.base + path
        if query:
            url += "?" + "&".join(f"{k}={quote(v)}" for k, v in sorted(query.items()))
        headers = {"Accept": "application/json", **self.endpoint.headers}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            response = self.pool.request(method, url, body=data, headers=headers)
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise SubmitError(
                f"cannot reach the {self.what} at {self.endpoint.base}: {reason}"
            ) from None
        text = response.data.decode("utf-8", "replace")
        if response.status in (401, 403):
            word = "unauthorized (401)" if response.status == 401 else "forbidden (403)"
            raise SubmitError(
                f"{self.what} {self.endpoint.base}: {method} {path}: {word}: "
                f"{_message(text)}; check the credentials and their RBAC"
            )
        details = _decoded(text).get("details") or {}
        group = path.split("/")[2] if path.startswith("/apis/") else ""
        if (
            response.status == 404
            and group in CRD_PROVIDERS
            and method in ("PATCH", "POST")
            and details.get("kind") != "namespaces"
        ):
            plural = path.split("/")[-2 if method == "PATCH" else -1]
            raise SubmitError(
                f"{self.what} {self.endpoint.base} has no {plural} "
                f"resource (404 on {group}): install {CRD_PROVIDERS[group]} (their CRDs) first"
            )
        if response.status >= 400:
            raise SubmitError(
                f"{self.what} {self.endpoint.base}: {method} {path}: HTTP {response.status}: "
                f"{_message(text)}"
            )
        return json.loads(text) if text.strip() else None


def _decoded(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _message(text: str) -> str:
    return " ".join(str(_decoded(text).get("message") or text.strip() or "no body").split())[:300]


def object_path(document: Mapping[str, Any], namespace: str) -> str:
    kind = str(document["kind"])
    if kind not in RESOURCES:
        raise SubmitError(f"rtflow submit does not know how to apply a {kind}")
    prefix, plural = RESOURCES[kind]
    name = document["metadata"]["name"]
    return f"{prefix}/namespaces/{namespace}/{plural}/{name}"


def apply(http: Http, documents: Sequence[Mapping[str, Any]], namespace: str) -> list[str]:
    """Server-side apply every object (field manager rtflow, force); returns 'Kind/name'."""
    applied = []
    for document in documents:
        body = {**document, "metadata": {**document["metadata"], "namespace": namespace}}
        http.request(
            "PATCH",
            object_path(document, namespace),
            body,
            content_type="application/apply-patch+yaml",
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
        )
        applied.append(f"{document['kind']}/{document['metadata']['name']}")
    return applied


def parse_params(pairs: Sequence[str], template: Mapping[str, Any]) -> dict[str, str]:
    """``k=v`` pairs checked against the template's declared parameters; required ones given."""
    declared = {p["name"]: p for p in template["spec"].get("arguments", {}).get("parameters", [])}
    name = template["metadata"]["name"]
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SubmitError(f"--param {pair!r} is not NAME=VALUE")
        if key not in declared:
            raise SubmitError(
                f"WorkflowTemplate {name!r} has no parameter {key!r} (it has {sorted(declared)})"
            )
        values[key] = value
    missing = sorted(k for k, p in declared.items() if k not in values and "value" not in p)
    if missing:
        raise SubmitError(f"WorkflowTemplate {name!r} needs --param {missing[0]}=VALUE")
    return values


def workflow(template: str, params: Mapping[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"workflowTemplateRef": {"name": template}}
    if params:
        spec["arguments"] = {
            "parameters": [{"name": k, "value": v} for k, v in sorted(params.items())]
        }
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{template}-",
            "labels": {"app.kubernetes.io/managed-by": "rtflow"},
        },
        "spec": spec,
    }


def submit_kubernetes(http: Http, template: str, params: Mapping[str, str], namespace: str) -> str:
    prefix, plural = RESOURCES["Workflow"]
    created = http.request(
        "POST", f"{prefix}/namespaces/{namespace}/{plural}", workflow(template, params)
    )
    return str(created["metadata"]["name"])


def submit_argo_server(http: Http, template: str, params: Mapping[str, str], namespace: str) -> str:
    body = {
        "namespace": namespace,
        "resourceKind": "WorkflowTemplate",
        "resourceName": template,
        "submitOptions": {
            "parameters": [f"{k}={v}" for k, v in sorted(params.items())],
            "labels": "app.kubernetes.io/managed-by=rtflow",
        },
    }
    created = http.request("POST", f"/api/v1/workflows/{namespace}/submit", body)
    return str(created["metadata"]["name"])


def wait(
    get_phase: Callable[[], str | None],
    *,
    timeout: float,
    interval: float | None = None,
    report: Callable[[str], None] = lambda phase: None,
) -> str:
    """Poll the phase until it ends; returns it. SubmitError on timeout."""
    deadline = time.monotonic() + timeout
    if interval is None:
        interval = float(os.environ.get("RTFLOW_SUBMIT_POLL", "2"))
    last = None
    while True:
        phase = get_phase() or "Pending"
        if phase != last:
            report(phase)
            last = phase
        if phase in DONE_PHASES:
            return phase
        if time.monotonic() >= deadline:
            raise SubmitError(f"the workflow is still {phase} after {timeout:g}s (--timeout)")
        time.sleep(interval)


def phase_getter(
    http: Http, name: str, namespace: str, *, argo_server: bool
) -> Callable[[], str | None]:
    if argo_server:
        path = f"/api/v1/workflows/{namespace}/{name}"
    else:
        prefix, plural = RESOURCES["Workflow"]
        path = f"{prefix}/namespaces/{namespace}/{plural}/{name}"

    def get() -> str | None:
        status = (http.request("GET", path) or {}).get("status") or {}
        phase = status.get("phase")
        return str(phase) if phase else None

    return get
