"""What an environment changes in a pipeline's base: as kustomize files, and applied here.

One plan (:func:`plan`), two renderings. :func:`overlay_files` writes it as a kustomize overlay
(``overlays/<env>/``: kustomization, image field config, JSON6902 patches, the model
configuration Triton reads there), which Argo CD builds. :func:`apply` applies the same plan to
the base objects in Python, so that ``rtflow compile -o - --env`` and ``rtflow submit --env``
deploy what Argo CD would, without a kustomize binary; a test builds every overlay with the real
kustomize and compares.

Triton servers are not patched by hand: the server is re-generated as the environment declares
it (on CPU, with fewer models, in another pool) and the difference to the base becomes the patch,
so an overlay can never disagree with what the generator would have written.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rtflow import ir
from rtflow.errors import RtflowError
from rtflow.generators.gitops import with_sync_wave

KUSTOMIZE_API = "kustomize.config.k8s.io/v1beta1"
# Where Argo's kinds keep container images, for kustomize's `images:` transformer (its default
# field specs only know `containers`/`initContainers` lists; Argo templates have `container`).
IMAGE_FIELDS = [
    {"path": f"spec/templates/{part}/image", "kind": "WorkflowTemplate"}
    for part in ("container", "script", "initContainers", "sidecars")
] + [{"path": "spec/template/container/image", "kind": kind} for kind in ("EventSource", "Sensor")]
# rtflow's Kafka stages read their brokers from this variable (stages/builtin/kafka_publish.py).
KAFKA_BROKERS_ENV = "KAFKA_BROKERS"

Document = dict[str, Any]
Operation = dict[str, Any]
Key = tuple[str, str, str]  # apiVersion, kind, name


@dataclass(frozen=True)
class Plan:
    """An environment's changes to one pipeline: patches per object, then kustomize's
    namespace, labels and images transformers, and the model configs Triton loads there."""

    env: ir.Environment
    patches: tuple[tuple[Key, tuple[Operation, ...]], ...]
    model_configs: tuple[tuple[str, str], ...]  # path under model-repository/ -> config.pbtxt


def plan(pipeline: ir.Pipeline, env: ir.Environment, documents: Sequence[Document]) -> Plan:
    patches: dict[Key, list[Operation]] = {}

    def add(document: Document, ops: Sequence[Operation]) -> None:
        if ops:
            patches.setdefault(_key(document), []).extend(ops)

    by_kind: dict[str, dict[str, Document]] = {}
    for document in documents:
        by_kind.setdefault(str(document["kind"]), {})[_name(document)] = document
    configs: list[tuple[str, str]] = []
    for server in pipeline.servers:
        variant = server_variant(server, env)
        if variant is server:
            continue
        for new in _server_documents(variant):
            old = by_kind.get(str(new["kind"]), {}).get(_name(new))
            if old is None:
                raise RtflowError(
                    f"pipeline {pipeline.name!r}, environment {env.name!r}: server "
                    f"{server.name!r} would need a {new['kind']} the base does not have"
                )
            add(old, list(json_patch(old, new)))
        if env.cpu_only or dict(env.models).get(server.name):
            from rtflow.gpu.config import render_config

            configs += [(f"{m.name}/config.pbtxt", render_config(m)) for m in variant.models]
    if pipeline.stream is not None:
        _stream_patches(pipeline, env, by_kind, add)
    for server, count in env.replicas:
        add(*_replica_patch(by_kind, server, count))
    if env.kafka_brokers:
        _broker_patches(by_kind, ",".join(env.kafka_brokers), add)
    if env.images or not env.pull_images:
        _local_image_patches(env, by_kind, add)
    rendered = apply(_plan(env, patches, configs), documents)
    _network_patches(pipeline, rendered, by_kind, add)
    return _plan(env, patches, configs)


def _plan(
    env: ir.Environment, patches: dict[Key, list[Operation]], configs: list[tuple[str, str]]
) -> Plan:
    return Plan(
        env=env,
        patches=tuple((key, tuple(ops)) for key, ops in sorted(patches.items())),
        model_configs=tuple(sorted(configs)),
    )


LOCAL_REGISTRIES = ("localhost/", "localhost:")
LOCAL_IMAGE_SKIPS = {
    # An image loaded into the nodes (`kind load`, a dev cluster) is in no registry: pulling it
    # would fail, so it is never pulled, and it has no digest to pin.
    "checkov.io/skip1": "CKV_K8S_15=a local image loaded into the nodes, never pulled",
    "checkov.io/skip2": "CKV_K8S_43=a local image loaded into the nodes has no registry digest",
    "kube-score/ignore": "container-image-pull-policy",
}


def _local_image_patches(
    env: ir.Environment,
    by_kind: dict[str, dict[str, Document]],
    add: Callable[[Document, Sequence[Operation]], None],
) -> None:
    """Containers this environment runs from a local image (``localhost/...``, or every image
    with ``pull_images=False``) are not pulled (``Always`` would fail), and their Deployments
    say why the image checks are skipped."""
    for documents in by_kind.values():
        for document in documents.values():
            changed = copy.deepcopy(document)
            local = False
            for holder in _image_holders(changed):
                image = retag(str(holder["image"]), env.images)
                if not env.pull_images or image.startswith(LOCAL_REGISTRIES):
                    holder["imagePullPolicy"] = "IfNotPresent"
                    local = True
            if not local:
                continue
            if changed["kind"] == "Deployment":
                changed["metadata"].setdefault("annotations", {}).update(LOCAL_IMAGE_SKIPS)
            add(document, list(json_patch(document, changed)))


def _network_patches(
    pipeline: ir.Pipeline,
    rendered: Sequence[Document],
    by_kind: dict[str, dict[str, Document]],
    add: Callable[[Document, Sequence[Operation]], None],
) -> None:
    """The NetworkPolicies follow what the environment changed (brokers, servers): they are
    derived again from the objects as this overlay builds them, and the difference is the
    patch."""
    from rtflow.generators import network

    objects = [d for d in rendered if d["kind"] != "NetworkPolicy"]
    for new in network.for_pipeline(pipeline, objects):
        old = by_kind.get("NetworkPolicy", {}).get(_name(new))
        if old is not None:
            add(old, list(json_patch({"spec": old["spec"]}, {"spec": new["spec"]})))


def server_variant(server: Any, env: ir.Environment) -> Any:
    """The Triton server as this environment runs it (the same object when unchanged)."""
    chosen = dict(env.models).get(server.name)
    resources = dict(env.server_resources).get(server.name)
    moved = env.gpu_pool is not None and server.pool is not None
    if not (env.cpu_only or chosen or resources or moved):
        return server
    from rtflow.gpu.models import cpu_variant

    models = tuple(m for m in server.models if chosen is None or m.name in chosen)
    variant = replace(server, models=models, resources=resources or server.resources)
    if env.cpu_only:
        return replace(variant, pool=None, models=tuple(cpu_variant(m) for m in models))
    return replace(variant, pool=env.gpu_pool if moved else server.pool)


def _server_documents(server: Any) -> list[Document]:
    from rtflow.gpu.serving import serving_manifests

    return [with_sync_wave(d) for d in serving_manifests(server)]


def json_patch(old: Any, new: Any, path: tuple[object, ...] = ()) -> Iterator[Operation]:
    """RFC 6902 operations turning ``old`` into ``new``: maps key by key, lists of the same
    length item by item, other lists and scalars replaced whole (no index arithmetic)."""
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for index, (before, after) in enumerate(zip(old, new, strict=True)):
            yield from json_patch(before, after, (*path, index))
    elif isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(old.keys() - new.keys()):
            yield {"op": "remove", "path": _pointer(*path, key)}
        for key in sorted(new.keys() - old.keys()):
            yield {"op": "add", "path": _pointer(*path, key), "value": new[key]}
        for key in sorted(old.keys() & new.keys()):
            yield from json_patch(old[key], new[key], (*path, key))
    elif old != new:
        yield {"op": "replace", "path": _pointer(*path), "value": new}


def _broker_patches(
    by_kind: dict[str, dict[str, Document]],
    url: str,
    add: Callable[[Document, Sequence[Operation]], None],
) -> None:
    for source in by_kind.get("EventSource", {}).values():
        kafka = source["spec"].get("kafka") or {}
        add(
            source,
            [
                {"op": "replace", "path": _pointer("spec", "kafka", event, "url"), "value": url}
                for event in sorted(kafka)
            ],
        )
    for sensor in by_kind.get("Sensor", {}).values():
        ops = []
        for index, trigger in enumerate(sensor["spec"].get("triggers") or []):
            for holder in ("template", "dlqTrigger"):
                node = trigger.get(holder) or {}
                template = node.get("template", node) if holder == "dlqTrigger" else node
                if "kafka" in template:
                    path: list[object] = ["spec", "triggers", index, holder]
                    path += ["template"] if holder == "dlqTrigger" else []
                    ops.append(
                        {"op": "replace", "path": _pointer(*path, "kafka", "url"), "value": url}
                    )
        add(sensor, ops)
    for template_doc in by_kind.get("WorkflowTemplate", {}).values():
        ops = []
        for index, template in enumerate(template_doc["spec"].get("templates") or []):
            for part in ("container", "script"):
                for position, var in enumerate((template.get(part) or {}).get("env") or []):
                    if var.get("name") == KAFKA_BROKERS_ENV and "value" in var:
                        where = ("spec", "templates", index, part, "env", position, "value")
                        ops.append({"op": "replace", "path": _pointer(*where), "value": url})
        add(template_doc, ops)


def _stream_patches(
    pipeline: ir.Pipeline,
    env: ir.Environment,
    by_kind: dict[str, dict[str, Document]],
    add: Callable[[Document, Sequence[Operation]], None],
) -> None:
    """Like the Triton servers: the stream plane re-generated with the environment's brokers
    and namespace (they reach into the workers' env, the scaler, the NetworkPolicy and the
    alert expressions), and the difference to the base as the patch. Metadata is left to
    kustomize's namespace and label transformers."""
    from rtflow.generators import stream as stream_plane

    variant = replace(pipeline, namespace=env.namespace or pipeline.namespace)
    changed = stream_plane.documents(
        variant, brokers=env.kafka_brokers or None, resources=dict(env.worker_resources)
    )
    for new in changed:
        old = by_kind.get(str(new["kind"]), {}).get(_name(new))
        if old is None:
            raise RtflowError(
                f"pipeline {pipeline.name!r}, environment {env.name!r}: the stream plane "
                f"would need a {new['kind']} the base does not have"
            )
        skip = ("apiVersion", "kind", "metadata")
        before = {k: v for k, v in old.items() if k not in skip}
        after = {k: v for k, v in new.items() if k not in skip}
        add(old, list(json_patch(before, after)))


def _replica_patch(
    by_kind: dict[str, dict[str, Document]], server: str, count: int
) -> tuple[Document, list[Operation]]:
    """The autoscaler's floor when one owns the count (raising its ceiling if needed), else the
    Deployment's replicas."""
    for kind, low, high in (
        ("HorizontalPodAutoscaler", "minReplicas", "maxReplicas"),
        ("ScaledObject", "minReplicaCount", "maxReplicaCount"),
    ):
        for scaler in by_kind.get(kind, {}).values():
            if scaler["spec"]["scaleTargetRef"]["name"] == server:
                ops = [{"op": "replace", "path": _pointer("spec", low), "value": count}]
                if int(scaler["spec"].get(high, count)) < count:
                    ops.append({"op": "replace", "path": _pointer("spec", high), "value": count})
                return scaler, ops
    deployment = by_kind["Deployment"][server]
    return deployment, [{"op": "add", "path": "/spec/replicas", "value": count}]


# The kustomize rendering.


def overlay_files(plan: Plan) -> dict[str, Document | list[Any]]:
    """``overlays/<env>/...`` (relative to the pipeline folder) -> YAML document: the
    kustomization, its image field config, and one JSON6902 patch file per patched object."""
    env = plan.env
    prefix = f"overlays/{env.name}/"
    files: dict[str, Document | list[Any]] = {}
    kustomization: Document = {
        "apiVersion": KUSTOMIZE_API,
        "kind": "Kustomization",
        "resources": ["../../base"],
    }
    if env.namespace:
        kustomization["namespace"] = env.namespace
    if env.labels:
        kustomization["labels"] = [{"pairs": dict(env.labels), "includeSelectors": False}]
    if env.images:
        kustomization["images"] = [
            {
                "name": image.name,
                **({"newName": image.new_name} if image.new_name else {}),
                **({"newTag": image.new_tag} if image.new_tag else {}),
                **({"digest": image.digest} if image.digest else {}),
            }
            for image in env.images
        ]
        kustomization["configurations"] = ["kustomizeconfig.yaml"]
        files[prefix + "kustomizeconfig.yaml"] = {"images": IMAGE_FIELDS}
    entries = []
    for (api_version, kind, name), ops in plan.patches:
        filename = f"patch-{kind.lower()}-{name}.yaml"
        group, _, version = api_version.rpartition("/")
        target = {"group": group, "version": version, "kind": kind, "name": name}
        entries.append({"path": filename, "target": {k: v for k, v in target.items() if v}})
        files[prefix + filename] = list(ops)
    if entries:
        kustomization["patches"] = entries
    files[prefix + "kustomization.yaml"] = kustomization
    return files


def model_config_files(plan: Plan) -> dict[str, str]:
    """``overlays/<env>/model-repository/<model>/config.pbtxt`` -> text, where the environment
    changes what Triton loads (the files to put in that cluster's model repository)."""
    prefix = f"overlays/{plan.env.name}/model-repository/"
    return {prefix + path: text for path, text in plan.model_configs}


# The same plan applied here.


def apply(plan: Plan, documents: Sequence[Document]) -> list[Document]:
    """The base objects as the environment's overlay builds them (kustomize's semantics for the
    transformers the overlay uses: JSON6902 patches, namespace, labels, images)."""
    env = plan.env
    patches = dict(plan.patches)
    result = []
    for original in documents:
        document = copy.deepcopy(original)
        for op in patches.get(_key(document), ()):
            _apply_operation(document, op)
        metadata = document.setdefault("metadata", {})
        if env.namespace:
            metadata["namespace"] = env.namespace
            if document["kind"] in ("RoleBinding", "ClusterRoleBinding"):
                for subject in document.get("subjects") or []:
                    if subject.get("kind") == "ServiceAccount":
                        subject["namespace"] = env.namespace
        if env.labels:
            metadata["labels"] = {**(metadata.get("labels") or {}), **dict(env.labels)}
        if env.images:
            for holder in _image_holders(document):
                holder["image"] = retag(str(holder["image"]), env.images)
        result.append(document)
    return result


def retag(reference: str, overrides: Sequence[ir.ImageOverride]) -> str:
    """``reference`` after kustomize's ``images:`` entries (matched on the name alone)."""
    name, digest = ([*reference.split("@", 1), ""])[:2] if "@" in reference else (reference, "")
    slash, colon = name.rfind("/"), name.rfind(":")
    base, tag = (name[:colon], name[colon + 1 :]) if colon > slash else (name, "")
    for override in overrides:
        if override.name != base:
            continue
        base = override.new_name or base
        if override.digest:  # with a new tag too, kustomize keeps both: name:tag@digest
            return (
                base + (f":{override.new_tag}" if override.new_tag else "") + f"@{override.digest}"
            )
        if override.new_tag:
            return f"{base}:{override.new_tag}"
        break
    return base + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def _image_holders(document: Document) -> Iterator[dict[str, Any]]:
    """Every mapping whose ``image`` kustomize's images transformer rewrites here: the
    items of any ``containers``/``initContainers`` list, and the Argo fields of IMAGE_FIELDS."""

    def walk(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("containers", "initContainers") and isinstance(value, list):
                    yield from (
                        item for item in value if isinstance(item, dict) and "image" in item
                    )
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    seen: set[int] = set()
    for holder in walk(document):
        seen.add(id(holder))
        yield holder
    for spec in IMAGE_FIELDS:
        if spec["kind"] != document.get("kind"):
            continue
        for holder in _at(document, spec["path"].split("/")[:-1]):
            if "image" in holder and id(holder) not in seen:
                seen.add(id(holder))
                yield holder


def _at(node: Any, parts: list[str]) -> Iterator[dict[str, Any]]:
    if isinstance(node, list):
        for item in node:
            yield from _at(item, parts)
    elif isinstance(node, dict):
        if not parts:
            yield node
        elif parts[0] in node:
            yield from _at(node[parts[0]], parts[1:])


def _apply_operation(document: Document, op: Operation) -> None:
    parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
    parent: Any = document
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if op["op"] == "add":
            parent.insert(index, copy.deepcopy(op["value"]))
        elif op["op"] == "replace":
            parent[index] = copy.deepcopy(op["value"])
        else:
            del parent[index]
        return
    if op["op"] == "remove":
        del parent[last]
    elif op["op"] == "replace" and last not in parent:
        raise RtflowError(f"patch {op['path']}: nothing to replace in {_name(document)}")
    else:
        parent[last] = copy.deepcopy(op["value"])


def _key(document: Document) -> Key:
    return (str(document["apiVersion"]), str(document["kind"]), _name(document))


def _name(document: Document) -> str:
    return str(document["metadata"]["name"])


def _pointer(*parts: object) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)
