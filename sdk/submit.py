"""``rtflow submit``: apply a pipeline's objects and start a Workflow from its template.

Like ``argo submit --from workflowtemplate/NAME``. Two paths:

* Kubernetes API (default), through the official ``kubernetes`` client: credentials from the
  kubeconfig (``--kubeconfig``/``KUBECONFIG``/``~/.kube/config``, ``--context``) or the
  in-cluster service account; each object's resource is found by discovery from its apiVersion
  and kind (``kubernetes.dynamic.DynamicClient``), server-side applied (field manager
  ``rtflow``, ``force``, strict field validation as ``kubectl apply`` does), then a ``Workflow``
  with ``workflowTemplateRef`` is created. ``--wait`` watches it (list, then watch from the
  list's resourceVersion; a watch the server ends or expires is resumed or re-listed).
  Discovery is cached on disk per API server (``$XDG_CACHE_HOME/rtflow/discovery``, as kubectl
  keeps ``~/.kube/cache/discovery``): DynamicClient's lazy discoverer asks only for the group
  versions a submit uses, and re-discovers when a kind is not in the cache, so a CRD installed
  since is found. (Its default cache is one file per server in the shared temporary folder.)
* Argo Server (``--argo-server URL --token-env VAR``): ``POST /api/v1/workflows/{ns}/submit``
  with a bearer token; the objects must already be applied (Argo CD, or the first path). This
  is the Argo Server's own HTTP API (grpc-gateway), not a Kubernetes API: the kubernetes client
  and its discovery do not apply. :class:`ArgoServer` is the two calls rtflow makes, on
  urllib3, with a timeout on each and its errors as one line. hera's ``WorkflowsService`` (hera
  is a dependency already) could make them too, but sets no timeout on its requests (a server
  that does not answer hangs the submit) and reads each answer into the whole Workflow model
  for the one field ``--wait`` needs. ``--wait`` there polls the Workflow's phase: the Argo
  Server's event stream is not tried against a real Argo Server in the tests (``argo server``
  embeds its UI's build, which its Go module does not ship), so it is not used.

Every failure is a ``SubmitError`` whose text is one line: no kubeconfig, server unreachable,
401/403, a resource the server does not serve (its CRDs missing: the line names what installs
them), a namespace that does not exist, an object the server rejects.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import urllib3
from kubernetes.client import ApiClient, Configuration
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from rtflow.errors import RtflowError

FIELD_MANAGER = "rtflow"
# The API groups of the custom resources rtflow compiles, and what installs their CRDs.
CRD_PROVIDERS = {
    "argoproj.io": "Argo Workflows, Argo Events and Argo CD",
    "kafka.strimzi.io": "Strimzi",
    "keda.sh": "KEDA",
    "monitoring.coreos.com": "the Prometheus Operator",
}
# argoproj.io is three projects: the kind says which one.
ARGO_PROJECTS = {
    "Workflow": "Argo Workflows",
    "WorkflowTemplate": "Argo Workflows",
    "CronWorkflow": "Argo Workflows",
    "EventSource": "Argo Events",
    "Sensor": "Argo Events",
    "EventBus": "Argo Events",
    "Application": "Argo CD",
}
WORKFLOW_API = "argoproj.io/v1alpha1"
DONE_PHASES = ("Succeeded", "Failed", "Error")
CONNECT_TIMEOUT = 10.0  # s, every request
READ_TIMEOUT = 60.0  # s, a request other than a watch
WATCH_SLACK = 30.0  # s a watch may outlive its server-side timeoutSeconds before it is cut


class SubmitError(RtflowError):
    """A submit that could not be done; one line, exit 2."""


def installer(api_version: str, kind: str) -> str | None:
    """What installs the CRD of ``kind`` in ``api_version``'s group (None for a core group)."""
    group = api_version.rpartition("/")[0]
    if group == "argoproj.io" and kind in ARGO_PROJECTS:
        return ARGO_PROJECTS[kind]
    return CRD_PROVIDERS.get(group)


def _one_line(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit] or "no message"


def _status_body(body: object) -> dict[str, Any]:
    """The Kubernetes ``Status`` an error response carries, or {}."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        value = json.loads(body) if isinstance(body, str) else None
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- the Kubernetes API --------------------------------------------------------------------------


def kube_configuration(kubeconfig: str | None = None, context: str | None = None) -> Configuration:
    """The client configuration from the kubeconfig, or the in-cluster service account."""
    from kubernetes import config

    configuration = Configuration()
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube/config")
    path = path.split(os.pathsep)[0]
    try:
        if Path(path).exists():
            config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=path, context=context, client_configuration=configuration
            )
        elif kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        else:
            raise SubmitError(
                f"no kubeconfig at {path} and not running in a cluster; pass --kubeconfig, "
                "set KUBECONFIG, or use --argo-server URL --token-env VAR"
            )
    except config.ConfigException as error:
        raise SubmitError(f"kubeconfig {path}: {_one_line(str(error), 300)}") from None
    configuration.keep_alive = True  # a --wait watch can be idle for minutes
    return configuration


def discovery_cache(host: str) -> Path:
    """Where the discovery of the API server at ``host`` is cached (one file per server)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "rtflow" / "discovery"
    # If it cannot be made, the client cannot write the cache either: it discovers every time.
    with suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / f"{hashlib.sha256(host.encode()).hexdigest()[:24]}.json"


class _TimedClient(DynamicClient):
    """DynamicClient whose requests, discovery's included, cannot hang: the kubernetes client
    sets no timeout unless each call passes one. A watch may be read for as long as the
    ``timeoutSeconds`` it asked the server for (plus slack)."""

    def request(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        if params.get("_request_timeout") is None:
            read: float | None = READ_TIMEOUT
            if params.get("watch"):
                seconds = params.get("timeout_seconds")
                read = float(seconds) + WATCH_SLACK if seconds else None
            params["_request_timeout"] = (CONNECT_TIMEOUT, read)
        return super().request(method, path, body, **params)


class Kubernetes:
    """The Kubernetes API through the kubernetes client; errors are one-line SubmitErrors."""

    def __init__(self, configuration: Configuration) -> None:
        self.host = str(configuration.host).rstrip("/")
        self._api_client = ApiClient(configuration)
        self._dynamic: DynamicClient | None = None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None, context: str | None) -> Kubernetes:
        return cls(kube_configuration(kubeconfig, context))

    @property
    def dynamic(self) -> DynamicClient:
        if self._dynamic is None:  # reads the cached discovery, or asks /version and /apis
            with self._errors("discovery"):
                self._dynamic = _TimedClient(  # type: ignore[no-untyped-call]
                    self._api_client, cache_file=str(discovery_cache(self.host))
                )
        return self._dynamic

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]

    @contextmanager
    def _errors(
        self, doing: str, namespace: str | None = None, resource: Any = None
    ) -> Iterator[None]:
        """Any error of the block as a one-line SubmitError; ``resource`` is the one it uses."""
        try:
            yield
        except ApiException as error:
            raise self._refusal(error, doing, namespace, resource) from None
        except urllib3.exceptions.HTTPError as error:
            raise self._unreachable(error) from None
        except ValueError as error:  # the discoverer's "should start with https://"
            raise SubmitError(f"Kubernetes API {self.host}: {_one_line(str(error))}") from None

    def _unreachable(self, error: urllib3.exceptions.HTTPError) -> SubmitError:
        reason = getattr(error, "reason", None) or error
        return SubmitError(
            f"cannot reach the Kubernetes API at {self.host}: {_one_line(str(reason), 300)}"
        )

    def _refusal(
        self, error: ApiException, doing: str, namespace: str | None, resource: Any = None
    ) -> SubmitError:
        status = _status_body(error.body)
        message = _one_line(str(status.get("message") or error.body or error.reason or ""))
        where = f"Kubernetes API {self.host}: {doing}"
        if not error.status:  # no HTTP answer: TLS failed
            return SubmitError(
                f"cannot reach the Kubernetes API at {self.host}: {_one_line(str(error.reason))}"
            )
        if error.status in (401, 403):
            word = "unauthorized (401)" if error.status == 401 else "forbidden (403)"
            return SubmitError(f"{where}: {word}: {message}; check the credentials and their RBAC")
        details = status.get("details") or {}
        if error.status == 404 and details.get("kind") == "namespaces":
            return SubmitError(
                f"{where}: namespace {namespace or details.get('name')!r} does not exist; "
                "create it first (or pick another with -n)"
            )
        if error.status == 404 and resource is not None:
            # Only collections and applies are asked for: a 404 is the resource itself,
            # discovered from a cache that predates its CRD's removal.
            who = installer(resource.group_version, resource.kind)
            if who:
                return self._not_served(resource.group_version, resource.kind)
        return SubmitError(f"{where}: HTTP {error.status}: {message}")

    def resource(self, api_version: str, kind: str) -> Any:
        """The API resource serving ``kind``, found by discovery (cached)."""
        dynamic = self.dynamic
        with self._errors(f"discovery of {api_version} {kind}"):
            try:
                return dynamic.resources.get(api_version=api_version, kind=kind)
            except ResourceNotFoundError:
                raise self._not_served(api_version, kind) from None

    def _not_served(self, api_version: str, kind: str) -> SubmitError:
        who = installer(api_version, kind)
        fix = f"its CRD is missing; install {who} first" if who else "is the server too old?"
        return SubmitError(
            f"the Kubernetes API at {self.host} does not serve {kind} ({api_version}): {fix}"
        )

    def apply(self, documents: Sequence[Mapping[str, Any]], namespace: str) -> list[str]:
        """Server-side apply every object (field manager rtflow, force) in ``namespace``;
        returns 'Kind/name'. A binding's subject that is one of these objects' ServiceAccounts
        moves with it (see :func:`moved_subjects`)."""
        applied = []
        accounts = {
            (str(d["metadata"].get("namespace") or ""), str(d["metadata"]["name"]))
            for d in documents
            if d["kind"] == "ServiceAccount"
        }
        for document in documents:
            api_version, kind = str(document["apiVersion"]), str(document["kind"])
            name = str(document["metadata"]["name"])
            resource = self.resource(api_version, kind)
            body = moved_subjects(document, accounts, namespace)
            if resource.namespaced:
                body["metadata"] = {**document["metadata"], "namespace": namespace}
            with self._errors(f"apply {kind}/{name}", namespace, resource):
                self.dynamic.server_side_apply(  # type: ignore[no-untyped-call]
                    resource,
                    body=body,
                    namespace=namespace if resource.namespaced else None,
                    field_manager=FIELD_MANAGER,
                    force_conflicts=True,
                    query_params=[("fieldValidation", "Strict")],
                )
            applied.append(f"{kind}/{name}")
        return applied

    def create_workflow(self, template: str, params: Mapping[str, str], namespace: str) -> str:
        resource = self.resource(WORKFLOW_API, "Workflow")
        with self._errors("create Workflow", namespace, resource):
            created = self.dynamic.create(  # type: ignore[no-untyped-call]
                resource, body=workflow(template, params), namespace=namespace
            )
        return str(created.metadata.name)

    def wait(
        self,
        name: str,
        namespace: str,
        *,
        timeout: float,
        report: Callable[[str], None] = lambda phase: None,
    ) -> str:
        """Watch the Workflow until its phase ends; returns the phase. SubmitError on timeout.

        List it (by name), then watch from the list's resourceVersion, following each event's;
        a watch the server ends is resumed from the last version seen, and one whose version
        expired (410 Gone) starts over from a fresh list.
        """
        resource = self.resource(WORKFLOW_API, "Workflow")
        deadline = time.monotonic() + timeout
        phases = _Phases(report)
        version: str | None = None
        broken = 0
        while True:
            if version is None:
                with self._errors(f"get Workflow {name}", namespace, resource):
                    listing = self.dynamic.get(  # type: ignore[no-untyped-call]
                        resource, namespace=namespace, field_selector=f"metadata.name={name}"
                    ).to_dict()
                items = listing.get("items") or []
                if not items:
                    raise SubmitError(f"workflow {namespace}/{name} is gone (deleted)")
                if phases.seen(items[0]) in DONE_PHASES:
                    return phases.last
                version = str(listing["metadata"]["resourceVersion"])
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SubmitError(
                    f"the workflow is still {phases.last} after {timeout:g}s (--timeout)"
                )
            try:
                for event in self.dynamic.watch(  # type: ignore[no-untyped-call]
                    resource,
                    namespace=namespace,
                    name=name,
                    resource_version=version,
                    timeout=max(1, math.ceil(remaining)),
                ):
                    raw = event["raw_object"]
                    version = str(raw["metadata"]["resourceVersion"])
                    if event["type"] == "DELETED":
                        raise SubmitError(f"workflow {namespace}/{name} was deleted")
                    if event["type"] in ("ADDED", "MODIFIED") and phases.seen(raw) in DONE_PHASES:
                        return phases.last
                    broken = 0
            except ApiException as error:
                if error.status != 410:
                    raise self._refusal(
                        error, f"watch Workflow {name}", namespace, resource
                    ) from None
                version = None  # expired: list again
            except (urllib3.exceptions.ProtocolError, urllib3.exceptions.ReadTimeoutError):
                broken += 1  # the stream broke off: resume from the last version seen
                if broken > 3:
                    raise SubmitError(
                        f"the watch of workflow {namespace}/{name} on {self.host} broke "
                        f"{broken} times in a row"
                    ) from None
            except urllib3.exceptions.HTTPError as error:
                raise self._unreachable(error) from None


def moved_subjects(
    document: Mapping[str, Any], accounts: set[tuple[str, str]], namespace: str
) -> dict[str, Any]:
    """``document``, a (Cluster)RoleBinding's ServiceAccount subjects that are among the
    ``accounts`` applied with it ((namespace, name), as compiled) pointing at ``namespace``.

    ``-n`` applies a pipeline's objects in another namespace than the one compiled: its
    ServiceAccounts land there, so a binding that still named the compiled namespace would
    bind an account that does not exist and leave the pipeline's own unbound (its pods' Argo
    executor could not write its WorkflowTaskResult). kustomize's namespace transformer moves
    only subjects named ``default`` unless told to move them all; these are the pipeline's own
    accounts, so they move. Any other subject is left as written."""
    body = dict(document)
    if document["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
        return body
    own = str(document["metadata"].get("namespace") or "")
    subjects = []
    for subject in document.get("subjects") or []:
        where = str(subject.get("namespace") or own)
        if subject.get("kind") == "ServiceAccount" and (where, subject.get("name")) in accounts:
            subject = {**subject, "namespace": namespace}
        subjects.append(subject)
    if subjects:
        body["subjects"] = subjects
    return body


class _Phases:
    """The phases seen, each reported once as it changes; Failed and Error with why."""

    def __init__(self, report: Callable[[str], None]) -> None:
        self.report = report
        self.last = ""

    def seen(self, workflow: Mapping[str, Any]) -> str:
        phase = str((workflow.get("status") or {}).get("phase") or "Pending")
        if phase != self.last:
            why = failure(workflow) if phase in ("Failed", "Error") else ""
            self.report(f"{phase}: {why}" if why else phase)
            self.last = phase
        return phase


def failure(workflow: Mapping[str, Any]) -> str:
    """Why a Workflow failed, in one line: the controller's message, then each failed step
    (a pod or an http call) with its own, as ``argo get`` lists them."""
    status = workflow.get("status") or {}
    steps = sorted(
        (str(n.get("startedAt") or ""), str(n.get("displayName") or n.get("name") or ""),
         str(n.get("message") or n.get("phase")))
        for n in (status.get("nodes") or {}).values()
        if n.get("type") in ("Pod", "HTTP") and n.get("phase") in ("Failed", "Error")
    )  # fmt: skip
    parts = [str(status.get("message") or ""), *(f"{name}: {why}" for _, name, why in steps)]
    text = "; ".join(p for p in parts if p)
    return _one_line(text, 300) if text.strip() else ""


# -- the Argo Server ----------------------------------------------------------------------------


class ArgoServer:
    """The Argo Server's HTTP API: submit from a WorkflowTemplate, read a Workflow's phase."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        self.base = url.rstrip("/")
        self.headers = {"Accept": "application/json", "Authorization": f"Bearer {token}"}
        self.pool = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=timeout))

    def request(self, method: str, path: str, body: object = None) -> Any:
        headers = dict(self.headers)
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        try:
            response = self.pool.request(method, self.base + path, body=data, headers=headers)
        except urllib3.exceptions.HTTPError as error:
            reason = getattr(error, "reason", None) or error
            raise SubmitError(
                f"cannot reach the Argo Server at {self.base}: {_one_line(str(reason), 300)}"
            ) from None
        text = response.data.decode("utf-8", "replace")
        message = _one_line(str(_status_body(text).get("message") or text), 300)
        if response.status in (401, 403):
            word = "unauthorized (401)" if response.status == 401 else "forbidden (403)"
            raise SubmitError(
                f"Argo Server {self.base}: {method} {path}: {word}: {message}; "
                "check the token and its RBAC"
            )
        if response.status >= 400:
            raise SubmitError(
                f"Argo Server {self.base}: {method} {path}: HTTP {response.status}: {message}"
            )
        return json.loads(text) if text.strip() else None

    def submit(self, template: str, params: Mapping[str, str], namespace: str) -> str:
        body = {
            "namespace": namespace,
            "resourceKind": "WorkflowTemplate",
            "resourceName": template,
            "submitOptions": {
                "parameters": [f"{k}={v}" for k, v in sorted(params.items())],
                "labels": "app.kubernetes.io/managed-by=rtflow",
            },
        }
        created = self.request("POST", f"/api/v1/workflows/{namespace}/submit", body)
        return str(created["metadata"]["name"])

    def wait(
        self,
        name: str,
        namespace: str,
        *,
        timeout: float,
        report: Callable[[str], None] = lambda phase: None,
        interval: float = 2.0,
    ) -> str:
        """Poll the Workflow's phase until it ends; returns it. SubmitError on timeout."""
        deadline = time.monotonic() + timeout
        phases = _Phases(report)
        while True:
            found = self.request("GET", f"/api/v1/workflows/{namespace}/{name}") or {}
            if phases.seen(found) in DONE_PHASES:
                return phases.last
            if time.monotonic() >= deadline:
                raise SubmitError(
                    f"the workflow is still {phases.last} after {timeout:g}s (--timeout)"
                )
            time.sleep(interval)


# -- what both paths submit --------------------------------------------------------------------


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
    """The Workflow that runs ``template`` with ``params`` (a generated name)."""
    spec: dict[str, Any] = {"workflowTemplateRef": {"name": template}}
    if params:
        spec["arguments"] = {
            "parameters": [{"name": k, "value": v} for k, v in sorted(params.items())]
        }
    return {
        "apiVersion": WORKFLOW_API,
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{template}-",
            "labels": {"app.kubernetes.io/managed-by": "rtflow"},
        },
        "spec": spec,
    }
