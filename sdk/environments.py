"""Environments and Argo CD: where a compiled pipeline is deployed.

``rtflow.Environment("prod", namespace="fraud", image_tag="1.5.0", replicas={"fraud-triton": 3},
gpu_pool=L4_PROD, kafka_brokers=[...], labels={...})`` declares one deployment target; each
compiles to a kustomize overlay over the pipeline's base. ``rtflow.ArgoCD(repo_url=...)`` says
where the compiled folder lives in Git, so that an Argo CD Application per environment can point
at it. Both are plain values here; ``build_environments`` / ``build_argocd`` check them once, in
the IR builder, and raise one-line DefinitionErrors naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label, check_label

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_BROKER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
MAX_REPLICAS = 1000
# rtflow's own images (the Python-function base, the built-in stages) keep their version:
# an application's image_tag says nothing about them.
RTFLOW_IMAGES = "ghcr.io/rtflow/"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """A deployment target of a pipeline, compiled to ``overlays/<name>/``.

    ``image_tag`` re-tags every image of the pipeline's own stages (not Triton's, not rtflow's);
    ``images`` maps an image (as the pipeline writes it, without tag) to a tag or a
    ``sha256:`` digest, one by one (give one or the other). ``replicas`` maps a Triton server to
    its pod count (its autoscaler's minimum when it is autoscaled). ``gpu_pool`` moves every
    pool-placed Triton server to another pool of the same GPU resource. ``kafka_brokers``
    replaces the brokers of every Kafka trigger and dead-letter topic. ``labels`` go on every
    object's metadata (never on selectors, which are immutable).
    """

    name: str = field(kw_only=False)
    namespace: str | None = None
    image_tag: str | None = None
    images: Mapping[str, str] = field(default_factory=dict)
    replicas: Mapping[str, int] = field(default_factory=dict)
    gpu_pool: Any = None
    kafka_brokers: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class ArgoCD:
    """Where Argo CD finds the compiled folder: ``repo_url`` at ``revision``, under
    ``path_prefix`` (the folder ``rtflow compile -o`` wrote, relative to the repository root).
    ``rtflow compile --repo-url/--revision/--path-prefix`` override these."""

    repo_url: str | None = None
    revision: str = "HEAD"
    path_prefix: str | None = None
    project: str = "default"
    namespace: str = "argocd"
    destination_server: str = "https://kubernetes.default.svc"


def split_image(ref: str) -> tuple[str, str | None]:
    """``registry/name:tag@digest`` -> (``registry/name``, tag or None)."""
    name = ref.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None


def build_environments(
    environments: Sequence[object],
    *,
    stages: Sequence[ir.Stage],
    servers: Sequence[Any],
    triggers: Sequence[ir.Trigger],
) -> tuple[ir.Environment, ...]:
    built: dict[str, ir.Environment] = {}
    for index, environment in enumerate(environments):
        if not isinstance(environment, Environment):
            raise DefinitionError(
                f"environments[{index}] is a {type(environment).__name__}, not an Environment",
                fix="pass environments=[rtflow.Environment('dev', ...), ...]",
                field=f"environments[{index}]",
            )
        env = _Checker(environment, index, stages, servers, triggers).build()
        if env.name in built:
            raise DefinitionError(
                f"environment {env.name!r} is declared twice",
                fix="give each environment its own name",
                field=f"environments[{index}].name",
            )
        built[env.name] = env
    return tuple(built[name] for name in sorted(built))


class _Checker:
    def __init__(
        self,
        env: Environment,
        index: int,
        stages: Sequence[ir.Stage],
        servers: Sequence[Any],
        triggers: Sequence[ir.Trigger],
    ) -> None:
        self.env = env
        self.where = f"environments[{index}]"
        self.stages = stages
        self.servers = {s.name: s for s in servers}
        self.triggers = triggers

    def field(self, name: str) -> str:
        return f"{self.where}.{name}"

    def build(self) -> ir.Environment:
        env = self.env
        if not isinstance(env.name, str):
            raise DefinitionError(
                "an environment name must be a string",
                fix="use a name such as 'dev'",
                field=self.field("name"),
            )
        name = check_dns1123_label(env.name, field=self.field("name"), what="environment name")
        self.where = f"environments[{name!r}]"
        namespace = None
        if env.namespace is not None:
            namespace = check_dns1123_label(
                str(env.namespace), field=self.field("namespace"), what="namespace"
            )
        return ir.Environment(
            name=name,
            namespace=namespace,
            images=self._images(),
            replicas=self._replicas(),
            gpu_pool=self._gpu_pool(),
            kafka_brokers=self._brokers(),
            labels=self._labels(),
        )

    def _stage_images(self) -> list[str]:
        return sorted(
            {
                split_image(s.image)[0]
                for s in self.stages
                if s.image and s.kind in ("function", "container")
            }
        )

    def _images(self) -> tuple[ir.ImageOverride, ...]:
        env = self.env
        if env.image_tag is not None and env.images:
            raise DefinitionError(
                "image_tag and images are both given",
                fix="use image_tag for one tag on all the pipeline's images, or images={...}",
                field=self.field("image_tag"),
            )
        if env.image_tag is not None:
            tag = self._tag(env.image_tag, "image_tag")
            own = [i for i in self._stage_images() if not i.startswith(RTFLOW_IMAGES)]
            if not own:
                raise DefinitionError(
                    "image_tag is given but the pipeline has no image of its own to re-tag",
                    fix="drop image_tag",
                    field=self.field("image_tag"),
                )
            return tuple(ir.ImageOverride(image, new_tag=tag) for image in own)
        if not isinstance(env.images, Mapping):
            raise DefinitionError(
                f"images must be a dict of image -> tag, got {type(env.images).__name__}",
                fix="use images={'ghcr.io/acme/app': '1.5.0'}",
                field=self.field("images"),
            )
        known = set(self._stage_images()) | {split_image(s.image)[0] for s in self.servers.values()}
        overrides: list[ir.ImageOverride] = []
        for image, value in sorted(env.images.items()):
            where = f"images[{image!r}]"
            base, found = split_image(str(image))
            if found is not None or "@" in str(image):
                raise DefinitionError(
                    f"image {image!r} carries a tag or digest",
                    fix=f"name it without one: {base!r}",
                    field=self.field(where),
                )
            if image not in known:
                raise DefinitionError(
                    f"image {image!r} is not used by the pipeline",
                    fix=f"use one of {sorted(known)}",
                    field=self.field(where),
                )
            if isinstance(value, str) and _DIGEST.match(value):
                overrides.append(ir.ImageOverride(image, digest=value))
            else:
                overrides.append(ir.ImageOverride(image, new_tag=self._tag(value, where)))
        return tuple(overrides)

    def _tag(self, value: object, where: str) -> str:
        if not isinstance(value, str) or not _TAG.match(value):
            raise DefinitionError(
                f"{value!r} is not an image tag",
                fix="use letters, digits, '_', '.' or '-' (at most 128), e.g. '1.5.0', "
                "or a 'sha256:<64 hex>' digest",
                field=self.field(where),
            )
        return value

    def _replicas(self) -> tuple[tuple[str, int], ...]:
        if not isinstance(self.env.replicas, Mapping):
            raise DefinitionError(
                "replicas must be a dict of Triton server -> pod count",
                fix="use replicas={'fraud-triton': 3}",
                field=self.field("replicas"),
            )
        result = []
        for server, count in sorted(self.env.replicas.items()):
            where = self.field(f"replicas[{server!r}]")
            if server not in self.servers:
                known = sorted(self.servers) or "no Triton server"
                raise DefinitionError(
                    f"{server!r} is not a Triton server of the pipeline",
                    fix=f"use one of {known}",
                    field=where,
                )
            if isinstance(count, bool) or not isinstance(count, int):
                raise DefinitionError(
                    f"{count!r} is not a whole number of pods", fix="use e.g. 3", field=where
                )
            if not 1 <= count <= MAX_REPLICAS:
                raise DefinitionError(
                    f"{count} pods is outside 1..{MAX_REPLICAS}",
                    fix="use a count in that range",
                    field=where,
                )
            result.append((server, count))
        return tuple(result)

    def _gpu_pool(self) -> Any:
        pool = self.env.gpu_pool
        if pool is None:
            return None
        from rtflow.gpu.pools import GpuPool

        where = self.field("gpu_pool")
        if not isinstance(pool, GpuPool):
            raise DefinitionError(
                f"gpu_pool is a {type(pool).__name__}, not a GPU pool",
                fix="pass a pool built with rtflow.gpu.gpu_pool(...)",
                field=where,
            )
        placed = [s for s in self.servers.values() if s.pool is not None]
        if not placed:
            raise DefinitionError(
                "gpu_pool is given but no Triton server of the pipeline runs on a GPU pool",
                fix="drop gpu_pool",
                field=where,
            )
        for server in placed:
            if server.pool.gpu_resource != pool.gpu_resource or (
                server.pool.gpus_per_pod != pool.gpus_per_pod
            ):
                raise DefinitionError(
                    f"pool {pool.name!r} gives {pool.gpus_per_pod} x {pool.gpu_resource} but "
                    f"server {server.name!r} is built for {server.pool.gpus_per_pod} x "
                    f"{server.pool.gpu_resource}",
                    fix="use a pool with the same GPU resource and count (the overlay only moves "
                    "the pods; a different GPU shape needs its own server)",
                    field=where,
                )
        return pool

    def _brokers(self) -> tuple[str, ...]:
        brokers = self.env.kafka_brokers
        if not brokers:
            return ()
        where = self.field("kafka_brokers")
        if isinstance(brokers, str) or not isinstance(brokers, Sequence):
            raise DefinitionError(
                "kafka_brokers must be a list of host:port",
                fix="use kafka_brokers=['kafka-0.kafka.svc:9092']",
                field=where,
            )
        for broker in brokers:
            if not isinstance(broker, str) or not _BROKER.match(broker):
                raise DefinitionError(
                    f"{broker!r} is not a host:port broker address",
                    fix="use e.g. 'kafka-0.kafka.svc:9092'",
                    field=where,
                )
        uses_kafka = any(
            isinstance(t.source, ir.KafkaSource) or t.delivery.dead_letter is not None
            for t in self.triggers
        )
        if not uses_kafka:
            raise DefinitionError(
                "kafka_brokers is given but the pipeline has no Kafka trigger or dead-letter topic",
                fix="drop kafka_brokers",
                field=where,
            )
        return tuple(brokers)

    def _labels(self) -> tuple[tuple[str, str], ...]:
        for key, value in self.env.labels.items():
            where = self.field(f"labels.{key}")
            if not isinstance(value, str):
                raise DefinitionError(
                    f"label {key}={value!r} is not a string", fix="quote it", field=where
                )
            check_label(key, value, field=where)
        return tuple(sorted(self.env.labels.items()))


def build_argocd(value: object) -> ir.ArgoCD:
    if value is None:
        return ir.ArgoCD()
    if not isinstance(value, ArgoCD):
        raise DefinitionError(
            f"argocd is a {type(value).__name__}, not rtflow.ArgoCD",
            fix="pass argocd=rtflow.ArgoCD(repo_url='https://github.com/acme/deploy.git')",
            field="argocd",
        )
    return resolve_argocd(
        ir.ArgoCD(
            repo_url=value.repo_url,
            revision=value.revision,
            path_prefix=value.path_prefix,
            project=value.project,
            namespace=value.namespace,
            destination_server=value.destination_server,
        )
    )


def resolve_argocd(
    argocd: ir.ArgoCD,
    *,
    repo_url: str | None = None,
    revision: str | None = None,
    path_prefix: str | None = None,
) -> ir.ArgoCD:
    """``argocd`` with the command line's values (when given) taking precedence, checked."""
    result = ir.ArgoCD(
        repo_url=repo_url if repo_url is not None else argocd.repo_url,
        revision=revision if revision is not None else argocd.revision,
        path_prefix=path_prefix if path_prefix is not None else argocd.path_prefix,
        project=argocd.project,
        namespace=argocd.namespace,
        destination_server=argocd.destination_server,
    )
    url = result.repo_url
    if url is not None and not (
        isinstance(url, str) and re.match(r"^(https://|http://|ssh://|git@)[^\s]+$", url)
    ):
        raise DefinitionError(
            f"repo_url {url!r} is not a Git URL",
            fix="use https://github.com/acme/deploy.git or git@github.com:acme/deploy.git",
            field="argocd.repo_url",
        )
    if not isinstance(result.revision, str) or not _REVISION.match(result.revision):
        raise DefinitionError(
            f"revision {result.revision!r} is not a branch, tag or commit",
            fix="use e.g. 'HEAD', 'main' or 'v1.2.0'",
            field="argocd.revision",
        )
    prefix = result.path_prefix
    if prefix is not None:
        clean = prefix.strip("/")
        if not isinstance(prefix, str) or prefix.startswith("/") or ".." in clean.split("/"):
            raise DefinitionError(
                f"path_prefix {prefix!r} is not a path inside the repository",
                fix="give the folder relative to the repository root, e.g. 'manifests'",
                field="argocd.path_prefix",
            )
        result = ir.ArgoCD(**{**result.__dict__, "path_prefix": clean or "."})
    check_dns1123_label(result.project, field="argocd.project", what="Argo CD project")
    check_dns1123_label(result.namespace, field="argocd.namespace", what="namespace")
    return result
