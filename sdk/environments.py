"""Environments and Argo CD: where a compiled pipeline is deployed.

``rtflow.Environment("prod", namespace="fraud", image_tag="1.5.0", replicas={"fraud-triton": 3},
gpu_pool=L4_PROD, kafka_brokers=[...], labels={...})`` declares one deployment target; each
compiles to a kustomize overlay over the pipeline's base. ``Environment("kind", cpu_only=True,
models={"fraud-triton": ["fraud-scorer"]})`` is the shape of a dev cluster without GPUs: Triton
runs its models on CPU, and only the models whose weights that cluster can reach.
``rtflow.ArgoCD(repo_url=...)`` says where the compiled folder lives in Git, so that an Argo CD
Application per environment can point at it. Both are plain values here;
``build_environments`` (and :mod:`rtflow.argocd`'s ``build_argocd``) check them once, in the IR
builder, and raise one-line DefinitionErrors naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.image_digests import check_digests
from rtflow.names import check_dns1123_label, check_label

_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_BROKER = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?:[0-9]{1,5}$")
_REFERENCE_NAME = re.compile(
    r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$"
)
MAX_REPLICAS = 1000
# rtflow's own images (the Python-function base, the built-in stages) keep their version:
# an application's image_tag says nothing about them.
RTFLOW_IMAGES = "ghcr.io/rtflow/"


@dataclass(frozen=True, kw_only=True)
class Environment:
    """A deployment target of a pipeline, compiled to ``overlays/<name>/``.

    ``image_tag`` re-tags every image of the pipeline's own stages (not Triton's, not rtflow's);
    ``images`` maps an image (as the pipeline writes it, without tag) to a tag, a ``sha256:``
    digest or a whole other reference (``registry/name:tag``: a mirror, a CPU build), one by one
    (give one or the other). ``replicas`` maps a Triton server to its pod count (its
    autoscaler's minimum when it is autoscaled), or a stream worker Deployment
    (``<pipeline>-stream``) to its fewest workers (KEDA's minimum; at most the partitions).
    ``gpu_pool`` moves every pool-placed Triton server to another pool of the same GPU resource;
    ``cpu_only`` runs every Triton server without GPUs instead (no GPU requests, no GPU node
    placement, model instances on CPU), for a dev cluster or kind. ``models`` maps a Triton
    server to the models it loads here (default: all), for a cluster that cannot reach some
    models' weights; a model an inference step or the autoscaler uses cannot be left out, nor
    a step model of an ensemble it keeps.
    ``server_resources`` gives a Triton server other requests and limits here
    (``{"fraud-triton": {"cpu": "1", "memory": "2Gi"}}``, keys as ``triton_serving``'s: cpu,
    memory, cpu_limit, memory_limit). ``kafka_brokers`` replaces the brokers of every Kafka trigger,
    dead-letter topic and built-in Kafka stage. ``labels`` go on every object's metadata (never
    on selectors, which are immutable). ``worker_resources`` gives a stream worker Deployment
    other requests and limits here (same keys as ``server_resources``). ``require_digests``
    makes every image this environment runs (stages, stream workers, Triton) a compile error
    unless pinned by digest, here or in the pipeline: what production should demand (a tag can
    be moved; a digest cannot). ``pull_images=False`` is for clusters whose nodes were given
    the images (``kind load``): never pulled (``IfNotPresent``), with the image checks' skip
    annotations saying so.
    """

    name: str = field(kw_only=False)
    namespace: str | None = None
    image_tag: str | None = None
    images: Mapping[str, str] = field(default_factory=dict)
    replicas: Mapping[str, int] = field(default_factory=dict)
    gpu_pool: Any = None
    cpu_only: bool = False
    models: Mapping[str, Sequence[str]] = field(default_factory=dict)
    server_resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    kafka_brokers: Sequence[str] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    worker_resources: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    require_digests: bool = False
    pull_images: bool = True


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
    stream: ir.StreamPlane | None = None,
    stream_workers: Sequence[str] = (),
) -> tuple[ir.Environment, ...]:
    """Every environment checked against the pipeline it deploys (stages, servers, triggers,
    and the stream plane's image and worker Deployments)."""
    built: dict[str, ir.Environment] = {}
    for index, environment in enumerate(environments):
        if not isinstance(environment, Environment):
            raise DefinitionError(
                f"environments[{index}] is a {type(environment).__name__}, not an Environment",
                fix="pass environments=[rtflow.Environment('dev', ...), ...]",
                field=f"environments[{index}]",
            )
        env = _Checker(
            environment, index, stages, servers, triggers, stream, stream_workers
        ).build()
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
        stream: ir.StreamPlane | None = None,
        stream_workers: Sequence[str] = (),
    ) -> None:
        self.env = env
        self.where = f"environments[{index}]"
        self.stages = stages
        self.servers = {s.name: s for s in servers}
        self.triggers = triggers
        self.stream = stream
        self.stream_workers = tuple(stream_workers)

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
        images = self._images()
        self.check_digests(images)
        return ir.Environment(
            name=name,
            namespace=namespace,
            images=images,
            replicas=self._replicas(),
            gpu_pool=self._gpu_pool(),
            cpu_only=self._cpu_only(),
            models=self._models(),
            server_resources=self._server_resources(),
            kafka_brokers=self._brokers(),
            labels=self._labels(),
            worker_resources=self._worker_resources(),
            pull_images=self._flag("pull_images"),
        )

    def _flag(self, name: str) -> bool:
        value = getattr(self.env, name)
        if not isinstance(value, bool):
            raise DefinitionError(
                f"{name} must be True or False, got {value!r}",
                fix="give a bool",
                field=self.field(name),
            )
        return value

    def check_digests(self, overrides: Sequence[ir.ImageOverride]) -> None:
        """With ``require_digests``: every image this environment runs is pinned by digest."""
        if self._flag("require_digests"):
            others = [server.image for server in self.servers.values()]
            others += [self.stream.image] if self.stream is not None and self.stream.image else []
            check_digests(self.stages, others, overrides, field=self.field("require_digests"))

    def _stage_images(self) -> list[str]:
        images = {
            split_image(s.image)[0]
            for s in self.stages
            if s.image and s.kind in ("function", "container")
        }
        if self.stream is not None and self.stream.image:
            images.add(split_image(self.stream.image)[0])
        return sorted(images)

    def _server(self, name: object, where: str) -> Any:
        """The pipeline's Triton server of that name, or the error naming the ones it has."""
        server = self.servers.get(name) if isinstance(name, str) else None
        if server is None:
            known = sorted(self.servers) or "no Triton server"
            if self.stream_workers and where.endswith(f"replicas[{name!r}]"):
                known = [*sorted(self.servers), *self.stream_workers]
            raise DefinitionError(
                f"{name!r} is not a Triton server of the pipeline",
                fix=f"use one of {known}",
                field=where,
            )
        return server

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
            elif isinstance(value, str) and ("/" in value or ":" in value or "@" in value):
                overrides.append(self._reference(image, value, where))
            else:
                overrides.append(ir.ImageOverride(image, new_tag=self._tag(value, where)))
        return tuple(overrides)

    def _reference(self, image: str, value: str, where: str) -> ir.ImageOverride:
        """``registry/name:tag`` or ``registry/name@sha256:...``: the image replaced whole."""
        name, digest = ([*value.split("@", 1), ""])[:2] if "@" in value else (value, "")
        base, tag = split_image(name)
        if not _REFERENCE_NAME.match(base) or (digest and not _DIGEST.match(digest)):
            raise DefinitionError(
                f"{value!r} is not an image reference",
                fix="use 'registry/name:tag' or 'registry/name@sha256:<64 hex>' (lower case)",
                field=self.field(where),
            )
        if not tag and not digest:
            raise DefinitionError(
                f"{value!r} names an image but no tag or digest",
                fix=f"pin it, e.g. '{base}:1.0.0'",
                field=self.field(where),
            )
        return ir.ImageOverride(
            image,
            new_name=base if base != image else None,
            new_tag=self._tag(tag, where) if tag else None,
            digest=digest or None,
        )

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
            if server in self.stream_workers:
                assert self.stream is not None
                if isinstance(count, int) and count > self.stream.partitions:
                    raise DefinitionError(
                        f"{count} stream workers for {self.stream.partitions} partitions: a "
                        "worker without a partition idles",
                        fix=f"use at most {self.stream.partitions}, or raise stream.partitions",
                        field=where,
                    )
            else:
                self._server(server, where)
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

    def _cpu_only(self) -> bool:
        cpu_only = self.env.cpu_only
        where = self.field("cpu_only")
        if not isinstance(cpu_only, bool):
            raise DefinitionError(
                f"cpu_only must be True or False, got {cpu_only!r}", fix="give a bool", field=where
            )
        if not cpu_only:
            return False
        if not self.servers:
            raise DefinitionError(
                "cpu_only is given but the pipeline has no Triton server",
                fix="drop cpu_only",
                field=where,
            )
        if self.env.gpu_pool is not None:
            raise DefinitionError(
                "cpu_only and gpu_pool are both given",
                fix="use cpu_only=True for a cluster without GPUs, or gpu_pool=... to move pools",
                field=where,
            )
        from rtflow.gpu.models import cpu_variant

        for server in self.servers.values():
            for model in server.models:
                try:
                    cpu_variant(model)
                except DefinitionError as error:
                    raise DefinitionError(
                        f"model {model.name!r} of {server.name!r} cannot run on CPU "
                        f"({error.problem})",
                        fix=f"leave it out here: models={{{server.name!r}: [...]}} without it",
                        field=where,
                    ) from None
        return True

    def _models(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        from rtflow.gpu.ensemble import step_models

        chosen = self.env.models
        if not isinstance(chosen, Mapping):
            raise DefinitionError(
                "models must be a dict of Triton server -> the models it loads",
                fix="use models={'fraud-triton': ['fraud-scorer']}",
                field=self.field("models"),
            )
        used: dict[str, set[str]] = {}
        for stage in self.stages:
            if stage.inference is not None:
                used.setdefault(stage.inference.server, set()).add(stage.inference.model)
        result = []
        for server_name, names in sorted(chosen.items()):
            where = self.field(f"models[{server_name!r}]")
            server = self._server(server_name, where)
            declared = [m.name for m in server.models]
            if isinstance(names, str) or not isinstance(names, Sequence) or not names:
                raise DefinitionError(
                    "give the models this server loads here as a non-empty list",
                    fix=f"use e.g. {declared[:1]}",
                    field=where,
                )
            for name in names:
                if name not in declared:
                    raise DefinitionError(
                        f"{name!r} is not a model of {server_name!r}",
                        fix=f"use some of {declared}",
                        field=where,
                    )
            needed = set(used.get(server_name, set()))
            if server.autoscaling is not None and server.autoscaling.model:
                needed.add(server.autoscaling.model)
            kept = [m for m in server.models if m.name in needed or m.name in names]
            needed.update(m.name for m in step_models(*kept))  # an ensemble runs its steps
            left_out = sorted(needed - set(names))
            if left_out:
                raise DefinitionError(
                    f"model {left_out[0]!r} is left out, but the pipeline calls it, scales "
                    "the server on it or runs it in an ensemble's step",
                    fix=f"keep {left_out[0]!r} in the list",
                    field=where,
                )
            result.append((server_name, tuple(sorted(set(names)))))
        return tuple(result)

    def _server_resources(self) -> tuple[tuple[str, ir.Resources], ...]:
        given = self.env.server_resources
        if not isinstance(given, Mapping):
            raise DefinitionError(
                "server_resources must be a dict of Triton server -> {cpu, memory, ...}",
                fix="use server_resources={'fraud-triton': {'cpu': '1', 'memory': '2Gi'}}",
                field=self.field("server_resources"),
            )
        from rtflow.gpu.server import server_resources

        keys = ("cpu", "memory", "cpu_limit", "memory_limit")
        result = []
        for server, spec in sorted(given.items()):
            where = self.field(f"server_resources[{server!r}]")
            self._server(server, where)
            unknown = sorted(set(spec) - set(keys)) if isinstance(spec, Mapping) else ["?"]
            if unknown or not isinstance(spec, Mapping) or not {"cpu", "memory"} <= set(spec):
                raise DefinitionError(
                    f"{spec!r} does not give the server's resources",
                    fix="give cpu and memory (and cpu_limit, memory_limit if they differ), "
                    "e.g. {'cpu': '1', 'memory': '2Gi'}",
                    field=where,
                )
            try:
                resources = server_resources(server, **{k: spec.get(k) for k in keys})
            except DefinitionError as error:
                raise DefinitionError(
                    error.problem, fix=error.fix, field=f"{where}.{error.field}"
                ) from None
            result.append((server, resources))
        return tuple(result)

    def _worker_resources(self) -> tuple[tuple[str, ir.Resources], ...]:
        given = self.env.worker_resources
        if not isinstance(given, Mapping):
            raise DefinitionError(
                "worker_resources must be a dict of stream worker Deployment -> {cpu, memory}",
                fix="use worker_resources={'<pipeline>-stream': {'cpu': '2', 'memory': '2Gi'}}",
                field=self.field("worker_resources"),
            )
        from rtflow.stage_ir import check_resources

        keys = ("cpu", "memory", "cpu_limit", "memory_limit")
        result = []
        for name, spec in sorted(given.items()):
            where = self.field(f"worker_resources[{name!r}]")
            if name not in self.stream_workers:
                known = list(self.stream_workers) or "none: the pipeline has no stream=)"
                raise DefinitionError(
                    f"{name!r} is not a stream worker Deployment of the pipeline",
                    fix=f"use one of {known}",
                    field=where,
                )
            unknown = sorted(set(spec) - set(keys)) if isinstance(spec, Mapping) else ["?"]
            if unknown or not isinstance(spec, Mapping) or not {"cpu", "memory"} <= set(spec):
                raise DefinitionError(
                    f"{spec!r} does not give the workers' resources",
                    fix="give cpu and memory (and cpu_limit, memory_limit if they differ), "
                    "e.g. {'cpu': '2', 'memory': '2Gi'}",
                    field=where,
                )
            resources = check_resources(*(spec.get(k) for k in keys), prefix=f"{where}.")
            result.append((str(name), resources))
        return tuple(result)

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
