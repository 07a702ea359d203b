"""The compiled output of one or more pipelines: ordered objects, extra files, and the checks
that they fit together.

Generators each see one piece; only here are all pieces in view, so the cross-resource checks
(a DAG task names a template that exists and passes exactly its inputs; later sensor to event
source, trigger parameters to template parameters, inference steps to Triton services) run here,
before any writer touches the disk.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from rtflow import api_limits
from rtflow.errors import BundleError
from rtflow.generators.stream.workers import STAGE_SECRETS_VOLUME

Document = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object, as the plain dict that will be written, and the pipeline it is for."""

    pipeline: str
    body: Document

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def filename(self) -> str:
        return f"{self.kind.lower()}-{self.name}.yaml"

    @property
    def apply_order(self) -> tuple[int, str, str]:
        """Identities first, then the bus, Triton, the template, and what starts it (the order
        of the sync waves)."""
        return (KIND_ORDER.get(self.kind, len(KIND_ORDER)), self.kind, self.name)


KIND_ORDER = {
    kind: rank
    for rank, kind in enumerate(
        (
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "NetworkPolicy",
            "KafkaTopic",
            "EventBus",
            "ConfigMap",
            "Service",
            "Deployment",
            "PodDisruptionBudget",
            "HorizontalPodAutoscaler",
            "TriggerAuthentication",
            "ScaledObject",
            "PodMonitor",
            "PrometheusRule",
            "WorkflowTemplate",
            "EventSource",
            "Sensor",
        )
    )
}


@dataclass(frozen=True)
class ExtraFile:
    """A file that is not a Kubernetes object (a model's config.pbtxt, a README)."""

    pipeline: str
    path: str
    text: str


@dataclass(frozen=True)
class YamlFile:
    """A YAML file that is not a Kubernetes object (an overlay's kustomization or patch), at
    ``path`` relative to the pipeline's folder."""

    pipeline: str
    path: str
    body: dict[str, Any] | list[Any]


@dataclass(frozen=True)
class Bundle:
    """``layered`` pipelines declare environments: their objects go under ``base/`` and
    ``overlays`` holds each selected environment's files. ``applications`` are Argo CD
    Applications (not part of any pipeline's kustomization). ``kept`` are folder-relative paths
    a partial compile (``--env``) leaves alone: the overlays and Applications of environments it
    did not select. ``rendered`` holds each selected environment's objects as its overlay
    builds them (what ``-o - --env`` prints and ``submit --env`` applies)."""

    manifests: tuple[Manifest, ...]
    files: tuple[ExtraFile, ...] = ()
    sources: tuple[tuple[str, str], ...] = field(default=())
    layered: tuple[str, ...] = ()
    overlays: tuple[YamlFile, ...] = ()
    applications: tuple[Manifest, ...] = ()
    kept: tuple[str, ...] = ()
    rendered: tuple[tuple[str, Manifest], ...] = ()

    def pipelines(self) -> list[str]:
        return sorted({m.pipeline for m in self.manifests} | {f.pipeline for f in self.files})

    def for_pipeline(self, name: str) -> list[Manifest]:
        return [m for m in self.manifests if m.pipeline == name]

    def deployed(self, name: str, env: str | None) -> list[Manifest]:
        """A pipeline's objects as ``env`` deploys them: its overlay's when the pipeline declares
        that environment, else the base."""
        chosen = [m for e, m in self.rendered if e == env and m.pipeline == name]
        return chosen or self.for_pipeline(name)


Check = Callable[[Bundle], Iterable[str]]


def check_unique_objects(bundle: Bundle) -> Iterable[str]:
    seen: set[tuple[str, str, str]] = set()
    for m in bundle.manifests:
        namespace = str(m.body["metadata"].get("namespace") or "")
        key = (m.kind, namespace, m.name)
        if key in seen:
            yield f"{m.kind} {m.name!r} is generated twice (pipeline {m.pipeline!r})"
        seen.add(key)


def check_dag_tasks(bundle: Bundle) -> Iterable[str]:
    """Each DAG task names a template of the same WorkflowTemplate and passes exactly its inputs;
    every task it depends on or reads (``{{tasks.X...}}``) exists in the same DAG."""
    for m in bundle.manifests:
        if m.kind != "WorkflowTemplate":
            continue
        templates = {t.get("name"): t for t in m.body.get("spec", {}).get("templates", [])}
        for template in templates.values():
            tasks = (template.get("dag") or {}).get("tasks") or []
            task_names = {t.get("name") for t in tasks}
            for task in tasks:
                where = f"WorkflowTemplate {m.name!r}, task {task.get('name')!r}"
                yield from _check_task_target(where, task, templates)
                named = _depends_names(task.get("depends", "")) + list(
                    task.get("dependencies") or []
                )
                named += _TASK_REFERENCE.findall(json.dumps(task))
                for dependency in sorted(set(named)):
                    if dependency not in task_names:
                        yield f"{where}: refers to unknown task {dependency!r}"


_TASK_REFERENCE = re.compile(r"\{\{tasks\.([A-Za-z0-9_-]+)\.")


def _check_task_target(where: str, task: Document, templates: dict[Any, Document]) -> Iterable[str]:
    if "template" not in task:
        return  # templateRef or inline: resolved by Argo against other objects
    target = templates.get(task["template"])
    if target is None:
        yield f"{where}: template {task['template']!r} does not exist"
        return
    declared = {p["name"]: p for p in (target.get("inputs") or {}).get("parameters", [])}
    passed = {p["name"] for p in (task.get("arguments") or {}).get("parameters", [])}
    for extra in sorted(passed - set(declared)):
        yield f"{where}: passes {extra!r}, which {task['template']!r} does not declare"
    for name, p in sorted(declared.items()):
        if name not in passed and "default" not in p and "value" not in p:
            yield f"{where}: does not pass required input {name!r}"


def _depends_names(depends: str) -> list[str]:
    names = []
    for token in depends.replace("(", " ").replace(")", " ").split():
        if token in {"&&", "||", "!"}:
            continue
        names.append(token.split(".", 1)[0].lstrip("!"))
    return names


def _by_kind(bundle: Bundle, kind: str) -> dict[tuple[str, str], Manifest]:
    return {
        (str(m.body["metadata"].get("namespace") or ""), m.name): m
        for m in bundle.manifests
        if m.kind == kind
    }


def check_sensors(bundle: Bundle) -> Iterable[str]:
    """Sensor -> EventSource, event and bus; trigger -> WorkflowTemplate and its parameters."""
    sources = _by_kind(bundle, "EventSource")
    templates = _by_kind(bundle, "WorkflowTemplate")
    accounts = _by_kind(bundle, "ServiceAccount")
    buses = {(m.pipeline, m.name) for m in bundle.manifests if m.kind == "EventBus"}
    for (namespace, name), sensor in _by_kind(bundle, "Sensor").items():
        where = f"Sensor {name!r}"
        spec = sensor.body["spec"]
        bus = spec.get("eventBusName") or "default"
        emitted = {b for p, b in buses if p == sensor.pipeline}
        if emitted and bus not in emitted:
            yield f"{where}: uses EventBus {bus!r}, but the pipeline emits {sorted(emitted)}"
        account = spec.get("template", {}).get("serviceAccountName")
        if account and (namespace, account) not in accounts:
            yield f"{where}: ServiceAccount {account!r} is not generated"
        for dependency in spec.get("dependencies") or []:
            if "eventSourceName" not in dependency or "eventName" not in dependency:
                yield (
                    f"{where}: dependency {dependency.get('name')!r} names no EventSource or event"
                )
                continue
            yield from _check_dependency(
                where, bus, dependency, sources.get((namespace, dependency["eventSourceName"]))
            )
        for trigger in spec.get("triggers") or []:
            k8s = (trigger.get("template") or {}).get("k8s")
            if k8s is not None:
                yield from _check_start(where, k8s, templates, namespace)


def _check_dependency(
    where: str, bus: str | None, dependency: Document, source: Manifest | None
) -> Iterable[str]:
    if source is None:
        yield (
            f"{where}: dependency {dependency['name']!r} names EventSource "
            f"{dependency['eventSourceName']!r}, which is not generated"
        )
        return
    spec = source.body["spec"]
    events = {
        event
        for key, value in spec.items()
        if isinstance(value, dict) and key not in ("template", "service")
        for event in value
    }
    if dependency["eventName"] not in events:
        yield f"{where}: EventSource {source.name!r} has no event {dependency['eventName']!r}"
    if (spec.get("eventBusName") or "default") != bus:
        yield (
            f"{where}: uses EventBus {bus!r} but EventSource {source.name!r} publishes to "
            f"{spec.get('eventBusName')!r}"
        )


def _check_start(
    where: str, k8s: Document, templates: dict[tuple[str, str], Manifest], namespace: str
) -> Iterable[str]:
    workflow = k8s["source"]["resource"]
    ref = workflow["spec"]["workflowTemplateRef"]["name"]
    template = templates.get((namespace, ref))
    if template is None:
        yield f"{where}: a trigger starts WorkflowTemplate {ref!r}, which is not generated"
        return
    declared = {p["name"] for p in template.body["spec"].get("arguments", {}).get("parameters", [])}
    passed = workflow["spec"].get("arguments", {}).get("parameters", [])
    for p in passed:
        if p["name"] not in declared:
            yield (
                f"{where}: trigger passes {p['name']!r}, which WorkflowTemplate {ref!r} "
                "does not declare"
            )
    for parameter in k8s.get("parameters", []):
        dest = parameter["dest"].split(".")
        index_ok = len(dest) == 5 and dest[3].isdigit() and int(dest[3]) < len(passed)
        if dest[:3] != ["spec", "arguments", "parameters"] or not index_ok:
            yield (
                f"{where}: parameter destination {parameter['dest']!r} is not one of the "
                "Workflow's arguments"
            )


def check_inference_targets(bundle: Bundle) -> Iterable[str]:
    """An http inference step calls a generated Triton Service whose Deployment loads its model."""
    services = {m.name for m in bundle.manifests if m.kind == "Service"}
    loaded: dict[str, set[str]] = {}
    for m in bundle.manifests:
        if m.kind == "Deployment":
            for container in m.body["spec"]["template"]["spec"].get("containers", []):
                args = container.get("args") or []
                loaded.setdefault(m.name, set()).update(
                    a.split("=", 1)[1] for a in args if a.startswith("--load-model=")
                )
    for m in bundle.manifests:
        if m.kind != "WorkflowTemplate":
            continue
        for template in m.body["spec"].get("templates", []):
            match = _INFER_URL.match(str((template.get("http") or {}).get("url", "")))
            if match is None:
                continue
            service, model = match.group(1), match.group(2)
            where = f"WorkflowTemplate {m.name!r}, step {template['name']!r}"
            if service not in services:
                yield f"{where}: calls Service {service!r}, which is not generated"
            elif model not in loaded.get(service, set()):
                yield f"{where}: Triton {service!r} does not load model {model!r}"


# a model under canary is called by its declared stable version (``.../versions/<n>/infer``)
_INFER_URL = re.compile(
    r"^http://([a-z0-9-]+)(?:\.[a-z0-9.-]+)?:\d+/v2/models/([^/]+)(?:/versions/\d+)?/infer$"
)


def check_service_accounts(bundle: Bundle) -> Iterable[str]:
    """A RoleBinding binds a Role and a ServiceAccount that are generated beside it."""
    roles = _by_kind(bundle, "Role")
    accounts = _by_kind(bundle, "ServiceAccount")
    for (namespace, name), binding in _by_kind(bundle, "RoleBinding").items():
        if (namespace, binding.body["roleRef"]["name"]) not in roles:
            yield f"RoleBinding {name!r}: Role {binding.body['roleRef']['name']!r} is not generated"
        for subject in binding.body["subjects"]:
            if (namespace, subject["name"]) not in accounts:
                yield f"RoleBinding {name!r}: ServiceAccount {subject['name']!r} is not generated"


def _pipeline_of(m: Manifest) -> str:
    return str((m.body["metadata"].get("labels") or {}).get("rtflow.dev/pipeline", m.pipeline))


def _secret_keys(node: Any) -> set[tuple[str, str]]:
    """Every (Secret, key) a document names: ``{name, key}`` refs and projected items."""
    found: set[tuple[str, str]] = set()
    if isinstance(node, dict):
        if isinstance(node.get("secret"), dict) and "items" in node["secret"]:
            found |= {(node["secret"]["name"], i["key"]) for i in node["secret"]["items"]}
        elif set(node) == {"name", "key"}:
            found.add((str(node["name"]), str(node["key"])))
        for value in node.values():
            found |= _secret_keys(value)
    elif isinstance(node, list):
        for item in node:
            found |= _secret_keys(item)
    return found


def _is_stream_worker(m: Manifest) -> bool:
    labels = m.body["metadata"].get("labels") or {}
    return bool(labels.get("app.kubernetes.io/component") == "stream-worker")


def check_stream_plane(bundle: Bundle) -> Iterable[str]:
    """The two planes line up: every topic a stream scaler or a hand-off EventSource reads is
    declared (when the pipeline declares topics) with enough partitions for the scaler's
    ceiling; scalers target generated Deployments; workers call generated Triton Services;
    workers and hand-off EventSource log in with the same Secrets."""
    deployments = _by_kind(bundle, "Deployment")
    services = {name for _, name in _by_kind(bundle, "Service")}
    topics: dict[str, dict[str, int]] = {}
    for m in bundle.manifests:
        if m.kind == "KafkaTopic":
            # Strimzi: the topic is metadata.name unless spec.topicName says otherwise; the
            # partitions default to the cluster's (unknown here: no ceiling checked).
            spec = m.body.get("spec") or {}
            name = str(spec.get("topicName") or m.name)
            topics.setdefault(_pipeline_of(m), {})[name] = int(spec.get("partitions") or 0)
    workers = [m for m in bundle.manifests if m.kind == "Deployment" and _is_stream_worker(m)]
    for (namespace, name), scaler in _by_kind(bundle, "ScaledObject").items():
        if not _is_stream_worker(scaler):
            continue  # someone else's scaler: its target may live elsewhere
        target = scaler.body["spec"]["scaleTargetRef"]["name"]
        kind = scaler.body["spec"]["scaleTargetRef"].get("kind", "Deployment")
        if kind == "Deployment" and (namespace, target) not in deployments:
            yield f"ScaledObject {name!r}: Deployment {target!r} is not generated"
        declared = topics.get(_pipeline_of(scaler))
        for trigger in scaler.body["spec"].get("triggers") or []:
            topic = (
                (trigger.get("metadata") or {}).get("topic")
                if trigger.get("type") == "kafka"
                else None
            )
            if declared is None or topic is None:
                continue
            if topic not in declared:
                yield f"ScaledObject {name!r}: reads topic {topic!r}, which no KafkaTopic declares"
            elif 0 < declared[topic] < int(scaler.body["spec"].get("maxReplicaCount", 0)):
                yield (
                    f"ScaledObject {name!r}: scales to more workers than {topic!r} has "
                    f"partitions ({declared[topic]})"
                )
    for worker in workers:
        (container, *_) = worker.body["spec"]["template"]["spec"]["containers"]
        args = list(container.get("args") or [])
        for flag, value in itertools.pairwise(args):
            if flag == "--triton":
                host = value.partition("=")[2].rpartition(":")[0].split(".")[0]
                if host not in services:
                    yield (
                        f"Deployment {worker.name!r}: calls Triton Service {host!r}, which is "
                        "not generated"
                    )
    for m in bundle.manifests:
        if m.kind != "EventSource":
            continue
        pipeline = _pipeline_of(m)
        own_workers = [w for w in workers if _pipeline_of(w) == pipeline]
        if not own_workers:
            continue
        for event, source in sorted((m.body["spec"].get("kafka") or {}).items()):
            where = f"EventSource {m.name!r}, event {event!r}"
            declared = topics.get(pipeline)
            if declared is not None and source["topic"] not in declared:
                yield f"{where}: reads topic {source['topic']!r}, which no KafkaTopic declares"
            used = _secret_keys({k: source.get(k) for k in ("tls", "sasl")})
            for worker in own_workers:
                # the workers' Kafka credentials only: a hot stage's (a store's connection
                # string) are mounted beside them and are no business of the EventSource
                volumes = worker.body["spec"]["template"]["spec"].get("volumes") or []
                mounted = _secret_keys(
                    [v for v in volumes if v.get("name") != STAGE_SECRETS_VOLUME]
                )
                if used != mounted:
                    yield (
                        f"{where}: logs in with Secrets {sorted(used)}, the stream workers "
                        f"of {worker.name!r} with {sorted(mounted)}"
                    )


def check_object_sizes(bundle: Bundle) -> Iterable[str]:
    for m in bundle.manifests:
        reason = api_limits.too_large(m.body)
        if reason:
            yield (
                f"{m.kind} {m.name!r} of pipeline {m.pipeline!r} {reason}; {api_limits.SPLIT_HINT}"
            )


def check_network_flows(bundle: Bundle) -> Iterable[str]:
    """Every flow a pipeline's objects need is allowed by its NetworkPolicies."""
    from rtflow.generators.network_check import blocked

    # All objects at once: a Service may be another pipeline's (or, read back by lint,
    # carry no pipeline label), and policies add up whoever wrote them.
    for problem in blocked([m.body for m in bundle.manifests]):
        yield (
            f"the NetworkPolicies do not allow {problem}; recompile, or allow the flow in the "
            "policy that selects those pods"
        )


CHECKS: tuple[Check, ...] = (
    check_object_sizes,
    check_network_flows,
    check_unique_objects,
    check_dag_tasks,
    check_sensors,
    check_inference_targets,
    check_service_accounts,
    check_stream_plane,
)


def check(bundle: Bundle, checks: Iterable[Check] | None = None) -> Bundle:
    """Every check (default: CHECKS, read when called) over the base objects, and again over
    each environment's rendered objects (an overlay that moved one object to another
    namespace must move its peers too)."""
    checks = list(CHECKS if checks is None else checks)
    problems = [problem for c in checks for problem in c(bundle)]
    for env in sorted({e for e, _ in bundle.rendered}):
        rendered = Bundle(manifests=tuple(m for e, m in bundle.rendered if e == env))
        problems += [f"environment {env!r}: {problem}" for c in checks for problem in c(rendered)]
    if problems:
        raise BundleError("; ".join(problems))
    return bundle
