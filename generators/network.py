"""Zero-trust networking for a pipeline: every pod it runs may talk only to what it must.

The flows are read off the pipeline's own objects, not declared a second time: an Argo ``http``
step's URL names a Service, the built-in gRPC client stage's ``url`` parameter another, a
stream worker's ``--triton`` a third; a ``KAFKA_BROKERS`` value, a Kafka EventSource's or
dead-letter trigger's ``url`` name brokers; a Sensor and its EventSources use their EventBus;
a Triton server scraped by Prometheus is reached from its namespace; a canary controller's
``TRITON_HTTP_URL`` and ``TRITON_METRICS_URL`` name Triton's ports, and a Triton serving a model
under canary lets that controller's pods in (its pods' annotation names their label).
:func:`flows` finds them, :func:`documents` turns them into NetworkPolicies, and the bundle check
(:mod:`rtflow.generators.network_check`) proves, per environment, that every flow the objects
need is allowed by the policies the bundle holds (so a policy an overlay forgot fails compile).

Each component (the workflow pods, the Sensor, each EventSource, each Triton server) gets a
policy of both types that lists what it may send and receive: anything else is denied. A
default-deny policy over every pod labelled with the pipeline closes what no policy lists.
Pods that are not the pipeline's own (Argo's agent running ``http`` steps, the EventBus,
shared by pipelines) are left to their owners; the flows to and from them are allowed on
rtflow's side.

Two flows cannot be narrowed to a peer when compiling: the Kubernetes API server (the Argo
executor reports outputs, the Sensor creates Workflows; its address is the cluster's) and
cloud model repositories (S3, GCS): both are allowed by port (443, 6443) to any address.
A stage that calls a service of its own declares it with ``egress=[rtflow.Egress(...)]`` on
the pipeline.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from rtflow.generators import labels

Document = dict[str, Any]

NAMESPACE_LABEL = "kubernetes.io/metadata.name"
AGENT = {"workflows.argoproj.io/component": "agent"}
"""Argo's agent pods, which run a workflow's ``http`` steps."""
EVENTBUS_CLIENT_PORT = 4222  # JetStream
API_SERVER_PORTS = (443, 6443)
TRITON_METRICS_PORT = 8002
GRPC_CLIENT = "rtflow.stages.builtin.triton_client:triton_infer"
CANARY_ANNOTATION = "rtflow.dev/canary-controller"  # rtflow.gpu.server_pod's


@dataclass(frozen=True)
class Peer:
    """One end of a flow: pods (by labels, in ``namespace`` or the pipeline's own), a whole
    namespace (``labels`` None), or any address (both None)."""

    labels: tuple[tuple[str, str], ...] | None = None
    namespace: str | None = None
    cidr: str | None = None  # an address block (what a pipeline's egress= declares)

    @classmethod
    def pods(cls, found: Mapping[str, str], namespace: str | None = None) -> Peer:
        return cls(tuple(sorted(found.items())), namespace)

    @property
    def anywhere(self) -> bool:
        return self.labels is None and self.namespace is None and self.cidr is None


ANYWHERE = Peer()


@dataclass(frozen=True)
class Flow:
    why: str  # what needs it, for the check's message
    source: Peer
    destination: Peer
    port: int
    protocol: str = "TCP"
    namespace: str | None = None  # of the object that needs it (peers without one are there)


@dataclass
class _Objects:
    services: dict[tuple[str | None, str], Document] = field(default_factory=dict)
    namespace: str | None = None  # of the object whose flows are being read
    prometheus_namespace: str = "monitoring"


def _host_port(address: str, default_port: int) -> tuple[str, int]:
    if "://" in address:
        parts = urlsplit(address)
        return parts.hostname or "", parts.port or default_port
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (address, default_port)


def _destination(host: str, objects: _Objects) -> Peer:
    """A host name as a peer: a Service of the bundle (its pods), a Service elsewhere in the
    cluster (its namespace), or an address outside."""
    parts = host.split(".")
    namespace = parts[1] if len(parts) >= 3 and parts[2] == "svc" else objects.namespace
    service = objects.services.get((namespace, parts[0]))
    if service is not None:
        selector = service["spec"].get("selector") or {}
        if namespace == objects.namespace:
            return Peer.pods(selector)
        return Peer(tuple(sorted(selector.items())), namespace)
    if len(parts) >= 3 and parts[2] == "svc":
        return Peer(None, parts[1])
    return ANYWHERE


def _brokers(value: str, objects: _Objects) -> Iterator[tuple[Peer, int]]:
    for address in value.split(","):
        if address.strip():
            host, port = _host_port(address.strip(), 9092)
            yield _destination(host, objects), port


def _containers(pod: Document) -> Iterator[Document]:
    yield from pod.get("containers") or []
    yield from pod.get("initContainers") or []


def _env(container: Document, name: str) -> str | None:
    for var in container.get("env") or []:
        if var.get("name") == name and "value" in var:
            return str(var["value"])
    return None


def workflow_pods(template: Document) -> dict[str, str]:
    """The stable labels of a WorkflowTemplate's pods (never the user's own)."""
    found = (template["spec"].get("podMetadata") or {}).get("labels") or {}
    return {k: found[k] for k in (labels.COMPONENT, labels.PIPELINE) if k in found}


def _workflow_flows(document: Document, objects: _Objects) -> Iterator[Flow]:
    name = document["metadata"]["name"]
    pods = Peer.pods(workflow_pods(document))
    for port in API_SERVER_PORTS:
        yield Flow(f"WorkflowTemplate {name}: the Argo executor", pods, ANYWHERE, port)
    for template in document["spec"].get("templates") or []:
        where = f"WorkflowTemplate {name}, template {template['name']}"
        if "http" in template:
            host, port = _host_port(str(template["http"]["url"]), 80)
            if "{{" not in host:
                yield Flow(where, Peer.pods(AGENT), _destination(host, objects), port)
        container = template.get("container") or template.get("script") or {}
        if GRPC_CLIENT in " ".join(container.get("args") or []):
            for parameter in (template.get("inputs") or {}).get("parameters") or []:
                if parameter["name"] == "url" and "default" in parameter:
                    host, port = _host_port(str(parameter["default"]), 8001)
                    yield Flow(where, pods, _destination(host, objects), port)
        brokers = _env(container, "KAFKA_BROKERS")
        if brokers:
            for peer, port in _brokers(brokers, objects):
                yield Flow(where, pods, peer, port)
        # the canary controller's stages, from their pods (their own labels say which
        # Triton lets them in: rtflow.gpu.server_pod.CANARY_LABEL)
        marked = Peer.pods({**dict(pods.labels or ()), **_template_labels(template)})
        for variable, default in (("TRITON_HTTP_URL", 8000), ("TRITON_METRICS_URL", 8002)):
            url = _env(container, variable)
            if url:
                host, port = _host_port(url, default)
                yield Flow(where, marked, _destination(host, objects), port)


def _template_labels(template: Document) -> dict[str, str]:
    labels_: dict[str, str] = (template.get("metadata") or {}).get("labels") or {}
    return labels_


def _deployment_flows(document: Document, objects: _Objects) -> Iterator[Flow]:
    name = document["metadata"]["name"]
    template = document["spec"]["template"]
    pods = Peer.pods(document["spec"]["selector"]["matchLabels"])
    annotations = template["metadata"].get("annotations") or {}
    for container in _containers(template["spec"]):
        args = [str(a) for a in container.get("args") or []]
        for flag, value in itertools.pairwise(args):
            if flag == "--triton":
                host, port = _host_port(value.split("=", 1)[-1], 8001)
                yield Flow(f"Deployment {name}: --triton", pods, _destination(host, objects), port)
        for arg in args:
            repository = arg.removeprefix("--model-repository=")
            if repository != arg and repository.split("://")[0] in ("s3", "gs", "as"):
                yield Flow(f"Deployment {name}: model repository {repository}", pods, ANYWHERE, 443)
        brokers = _env(container, "KAFKA_BROKERS")
        if brokers:
            for peer, port in _brokers(brokers, objects):
                yield Flow(f"Deployment {name}: Kafka", pods, peer, port)
    controller = annotations.get(CANARY_ANNOTATION, "")
    if controller:  # a model under canary: its controller loads versions and reads metrics
        key, _, value = controller.partition("=")
        for port in (8000, TRITON_METRICS_PORT):
            yield Flow(f"Deployment {name}: canary controller", Peer.pods({key: value}), pods, port)
    if annotations.get("prometheus.io/scrape") == "true":
        port = int(annotations.get("prometheus.io/port", TRITON_METRICS_PORT))
        scraper = Peer(None, objects.prometheus_namespace)
        yield Flow(f"Deployment {name}: Prometheus", scraper, pods, port)


def _events_flows(document: Document, objects: _Objects) -> Iterator[Flow]:
    kind, name, spec = document["kind"], document["metadata"]["name"], document["spec"]
    key = "sensor-name" if kind == "Sensor" else "eventsource-name"
    pods = Peer.pods({key: name})
    bus = Peer.pods({"eventbus-name": spec.get("eventBusName") or "default"})
    yield Flow(f"{kind} {name}: its EventBus", pods, bus, EVENTBUS_CLIENT_PORT)
    if kind == "Sensor":
        for port in API_SERVER_PORTS:
            yield Flow(f"Sensor {name}: creating Workflows", pods, ANYWHERE, port)
        for trigger in spec.get("triggers") or []:
            for holder in (
                trigger.get("template") or {},
                (trigger.get("dlqTrigger") or {}).get("template") or {},
            ):
                kafka = holder.get("kafka")
                if kafka:
                    for peer, port in _brokers(str(kafka["url"]), objects):
                        yield Flow(f"Sensor {name}: trigger {holder['name']}", pods, peer, port)
        return
    for event, source in (spec.get("kafka") or {}).items():
        for peer, port in _brokers(str(source["url"]), objects):
            yield Flow(f"EventSource {name}: {event}", pods, peer, port)
    for event, source in (spec.get("webhook") or {}).items():
        yield Flow(f"EventSource {name}: webhook {event}", ANYWHERE, pods, int(source["port"]))


PROMETHEUS_ANNOTATION = "rtflow.dev/prometheus-namespace"
"""On the default-deny policy: the namespace whose Prometheus scrapes the pipeline's pods."""


def flows(documents: Sequence[Document], prometheus_namespace: str = "monitoring") -> list[Flow]:
    """Every flow the objects need, read off their cross-references."""
    for document in documents:
        annotations = document["metadata"].get("annotations") or {}
        if document["kind"] == "NetworkPolicy" and PROMETHEUS_ANNOTATION in annotations:
            prometheus_namespace = annotations[PROMETHEUS_ANNOTATION]
    objects = _Objects(
        services={
            (d["metadata"].get("namespace"), d["metadata"]["name"]): d
            for d in documents
            if d["kind"] == "Service"
        },
        prometheus_namespace=prometheus_namespace,
    )
    found: list[Flow] = []
    readers = {
        "WorkflowTemplate": _workflow_flows,
        "Deployment": _deployment_flows,
        "Sensor": _events_flows,
        "EventSource": _events_flows,
    }
    for document in documents:
        reader = readers.get(document["kind"])
        if reader is None:
            continue
        objects.namespace = document["metadata"].get("namespace")
        found += [replace(f, namespace=objects.namespace) for f in reader(document, objects)]
    return found


# -- policies ------------------------------------------------------------------------------------

DNS = Peer.pods({"k8s-app": "kube-dns"}, "kube-system")
STREAM_COMPONENT = "stream-worker"  # the stream plane writes its workers' policy itself


@dataclass(frozen=True)
class Component:
    """Pods of the pipeline that get a policy of their own."""

    name: str  # the NetworkPolicy's
    selector: Peer
    controller_pods: bool = True  # made by a controller at run time, not a Deployment here
    namespace: str | None = None  # its object's (a Triton server's may be another)


def components(documents: Sequence[Document]) -> list[Component]:
    found = []
    for document in documents:
        kind, name = document["kind"], document["metadata"]["name"]
        namespace = document["metadata"].get("namespace")
        if kind == "WorkflowTemplate":
            pods = Peer.pods(workflow_pods(document))
            found.append(Component(f"{name}-workflow", pods, namespace=namespace))
        elif kind == "Sensor":
            pods = Peer.pods({"sensor-name": name})
            found.append(Component(f"{name}-sensor", pods, namespace=namespace))
        elif kind == "EventSource":
            pods = Peer.pods({"eventsource-name": name})
            found.append(Component(f"{name}-eventsource", pods, namespace=namespace))
        elif kind == "Deployment":
            selector = document["spec"]["selector"]["matchLabels"]
            if selector.get(labels.COMPONENT) != STREAM_COMPONENT:
                found.append(Component(name, Peer.pods(selector), False, namespace))
    return found


def absolute(peer: Peer, namespace: str | None) -> Peer:
    """Pods "in the namespace of the object that needs the flow", said with that namespace."""
    if peer.labels is not None and peer.namespace is None and peer.cidr is None:
        return replace(peer, namespace=namespace)
    return peer


def relative(peer: Peer, namespace: str | None) -> Peer:
    """The peer as a policy in ``namespace`` writes it: pods there need no namespaceSelector."""
    if peer.labels is not None and peer.namespace == namespace:
        return replace(peer, namespace=None)
    return peer


def _peer(peer: Peer) -> list[Document]:
    """A rule's ``to``/``from`` for one peer (empty: any address)."""
    if peer.anywhere:
        return []
    if peer.cidr is not None:
        return [{"ipBlock": {"cidr": peer.cidr}}]
    entry: Document = {}
    if peer.namespace is not None:
        entry["namespaceSelector"] = {"matchLabels": {NAMESPACE_LABEL: peer.namespace}}
    if peer.labels is not None:
        entry["podSelector"] = {"matchLabels": dict(peer.labels)}
    return [entry]


def _rules(pairs: Iterable[tuple[Peer, int, str]], direction: str) -> list[Document]:
    ports: dict[Peer, set[tuple[int, str]]] = {}
    for peer, port, protocol in pairs:
        ports.setdefault(peer, set()).add((port, protocol))
    rules = []
    for peer in sorted(ports, key=lambda p: (p.cidr or "", p.namespace or "", p.labels or ())):
        rule: Document = {}
        if not peer.anywhere:
            rule[direction] = _peer(peer)
        rule["ports"] = [{"port": n, "protocol": proto} for n, proto in sorted(ports[peer])]
        rules.append(rule)
    return rules


def _metadata(name: str, namespace: str | None, pipeline: str) -> Document:
    meta: Document = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {
        labels.COMPONENT: "network-policy",
        labels.MANAGED_BY_KEY: labels.MANAGED_BY,
        labels.PART_OF: pipeline,
        labels.PIPELINE: pipeline,
    }
    return meta


CONTROLLER_PODS = {
    # kube-score looks for the pods a policy selects among the manifests; these are made at run
    # time by Argo's and Argo Events' controllers, so they are not there to be found.
    "kube-score/ignore": "networkpolicy-targets-pod",
}


def _within(source: Peer, component: Peer) -> bool:
    """Whether the flow's source pods are the component's (some of its pods may carry more
    labels: a canary controller's stages, marked for the Triton that lets them in)."""
    if source == component:
        return True
    return (
        source.namespace == component.namespace
        and source.labels is not None
        and component.labels is not None
        and set(component.labels) <= set(source.labels)
    )


def policy(
    name: str, selector: Peer, egress: list[Document], ingress: list[Document], *,
    namespace: str | None, pipeline: str, controller_pods: bool = False,
) -> Document:  # fmt: skip
    metadata = _metadata(name, namespace, pipeline)
    if controller_pods:
        metadata["annotations"] = dict(CONTROLLER_PODS)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {
            "podSelector": {"matchLabels": dict(selector.labels or ())},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": ingress,
            "egress": egress,
        },
    }


def documents(
    pipeline: str,
    namespace: str | None,
    objects: Sequence[Document],
    *,
    prometheus_namespace: str = "monitoring",
    extra_egress: Sequence[tuple[Peer, int, str]] = (),
) -> list[Document]:
    """The pipeline's NetworkPolicies: default-deny over its pods, then one per component
    with exactly the flows its objects need (``extra_egress``: what its stages declare)."""
    needed = flows(objects, prometheus_namespace)
    deny = policy(
        f"{pipeline}-default-deny", Peer.pods({labels.PIPELINE: pipeline}), [], [],
        namespace=namespace, pipeline=pipeline, controller_pods=True,
    )  # fmt: skip
    deny["metadata"]["annotations"][PROMETHEUS_ANNOTATION] = prometheus_namespace
    found = [deny]
    # Each flow's ends with their namespaces said: a component in another namespace (a Triton
    # server's own) gets its policy there, its peers from the pipeline's namespace by name.
    ends = [
        (absolute(f.source, f.namespace), absolute(f.destination, f.namespace), f) for f in needed
    ]
    for component in components(objects):
        here = component.namespace or namespace
        pods = absolute(component.selector, here)
        out = [(DNS, 53, "UDP"), (DNS, 53, "TCP")]
        out += [
            (relative(to, here), f.port, f.protocol) for src, to, f in ends if _within(src, pods)
        ]
        if component.name.endswith("-workflow"):
            out += list(extra_egress)
        into = [(relative(src, here), f.port, f.protocol) for src, to, f in ends if to == pods]
        found.append(
            policy(
                component.name, component.selector, _rules(out, "to"), _rules(into, "from"),
                namespace=here, pipeline=pipeline, controller_pods=component.controller_pods,
            )
        )  # fmt: skip
    return found


def for_pipeline(pipeline: Any, objects: Sequence[Document]) -> list[Document]:
    """:func:`documents` for a pipeline: its namespace, its Prometheus's, its ``egress``."""
    stream = pipeline.stream
    return documents(
        pipeline.name,
        pipeline.namespace,
        objects,
        prometheus_namespace=stream.prometheus_namespace if stream else "monitoring",
        extra_egress=[
            (Peer(cidr=rule.cidr), port, rule.protocol)
            for rule in pipeline.egress
            for port in rule.ports
        ],
    )
