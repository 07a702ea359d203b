"""From ``rtflow.Stream`` to the validated :class:`rtflow.ir.StreamPlane`.

Decides which tasks are the hot path (run by the stream workers) and which stay on the workflow
plane, and derives the transaction interval, batch wait and Triton batch sizes from the
pipeline's latency budget and its models. Every rule names pipeline, stage, field and fix.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import cast

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label
from rtflow.stage_ir import GENERATE_FUNCTION, check_resources
from rtflow.stream_layout import DRIFT_FUNCTIONS, KAFKA_PUBLISH_FUNCTION
from rtflow.streams import KafkaTopics, Stream
from rtflow.trigger_ir import check_topic

GUARANTEES = ("exactly_once", "at_least_once")
DEFAULT_BUDGET_MS = 100


def topological(tasks: Sequence[ir.Task]) -> list[ir.Task]:
    """Tasks in dependency order, ties by name (the IR is acyclic and sorted by name)."""
    by_name = {t.name: t for t in tasks}
    done: set[str] = set()
    ordered: list[ir.Task] = []
    while len(ordered) < len(tasks):
        for task in tasks:
            if task.name not in done and all(d in done or d not in by_name for d in task.depends):
                done.add(task.name)
                ordered.append(task)
                break
    return ordered


def value_refs(value: ir.Value | None) -> Iterator[ir.Value]:
    if value is None:
        return
    yield value
    if isinstance(value, ir.JsonObject):
        for _, inner in value.fields:
            yield from value_refs(inner)
    elif isinstance(value, ir.JsonList):
        for inner in value.items:
            yield from value_refs(inner)
    elif isinstance(value, ir.JsonString):
        yield from value_refs(value.value)
    elif isinstance(value, ir.TensorData):
        yield from value_refs(value.answer)


def condition_refs(condition: ir.Condition | None) -> Iterator[ir.Value]:
    if condition is None:
        return
    if isinstance(condition, ir.Compare):
        yield from value_refs(condition.left)
        yield from value_refs(condition.right)
    elif isinstance(condition, ir.Not):
        yield from condition_refs(condition.part)
    else:
        for part in condition.parts:
            yield from condition_refs(part)


def task_refs(task: ir.Task) -> Iterator[ir.Value]:
    for _, value in task.arguments:
        yield from value_refs(value)
    yield from condition_refs(task.when)
    yield from value_refs(task.fan_out)


def _runnable(stage: ir.Stage) -> bool:
    return stage.kind == "inference" or (stage.kind == "function" and stage.function is not None)


def split_hot_path(pipeline: ir.Pipeline) -> tuple[list[ir.Task], list[ir.Task]]:
    """(hot, handed off): a task is hot when its stage is a function or an inference step, it is
    no fan-out, reads no workflow field, and everything it depends on or reads is hot."""
    hot: list[ir.Task] = []
    names: set[str] = set()
    rest: list[ir.Task] = []
    for task in topological(pipeline.tasks):
        stage = pipeline.stage(task.stage)
        reads = list(task_refs(task))
        fits = (
            _runnable(stage)
            and task.fan_out is None
            and all(d in names for d in task.depends)
            and not any(isinstance(v, ir.WorkflowField | ir.Item) for v in reads)
            and all(v.task in names for v in reads if isinstance(v, ir.TaskOutput))
        )
        if fits:
            hot.append(task)
            names.add(task.name)
        else:
            rest.append(task)
    return hot, rest


def _positive(value: object, *, field: str, fix: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DefinitionError(
            f"{value!r} is not a positive whole number", fix=fix, field=f"stream.{field}"
        )
    return value


def build_stream(
    options: Stream | None, pipeline: ir.Pipeline, *, target: str = ""
) -> ir.StreamPlane | None:
    """``target``: ``module:attribute`` of the pipeline, which the worker's command loads."""
    if options is None:
        _refuse_drift(pipeline)
        return None
    if not isinstance(options, Stream):
        raise DefinitionError(
            f"stream is a {type(options).__name__}",
            fix="pass stream=rtflow.Stream(...)",
            field="stream",
        )
    kafka = [t for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
    if len(kafka) != 1:
        raise DefinitionError(
            f"the stream plane consumes one Kafka topic; the pipeline has {len(kafka)} Kafka "
            "triggers",
            fix="give the pipeline exactly one rtflow.kafka(...) trigger",
            field="stream",
        )
    trigger = kafka[0]
    source = cast(ir.KafkaSource, trigger.source)
    guarantee = options.guarantee
    if guarantee not in GUARANTEES:
        raise DefinitionError(
            f"guarantee {guarantee!r} is not one of {', '.join(GUARANTEES)}",
            fix="use 'exactly_once' (Kafka transactions) or 'at_least_once' (lower latency)",
            field="stream.guarantee",
        )
    budget = pipeline.latency_budget_ms or DEFAULT_BUDGET_MS
    interval = options.transaction_interval_ms
    if interval is None:
        interval = max(5, budget // 4)
    interval = _positive(interval, field="transaction_interval_ms", fix="give milliseconds, >= 1")
    max_wait = options.max_wait_ms if options.max_wait_ms is not None else max(1, budget // 8)
    max_wait = _positive(max_wait, field="max_wait_ms", fix="give milliseconds, >= 1")
    if pipeline.latency_budget_ms is not None and interval + max_wait >= budget:
        raise DefinitionError(
            f"a transaction interval of {interval} ms plus a batch wait of {max_wait} ms leaves "
            f"nothing of the {budget} ms latency budget",
            fix="shorten transaction_interval_ms / max_wait_ms, or leave them to the default",
            field="stream.transaction_interval_ms",
        )
    hot, rest = split_hot_path(pipeline)
    if not hot:
        raise DefinitionError(
            "no stage can run on the stream plane (only function and inference stages can)",
            fix="put the hot path in @rtflow.stage functions and rtflow.infer steps",
            field="stream",
        )
    hot_names = [t.name for t in hot]
    _check_publishes(pipeline, hot, rest)
    _check_drifts(pipeline, rest)
    hops = tuple(options.hops)
    for hop in hops:
        if hop not in hot_names:
            raise DefinitionError(
                f"hop {hop!r} is not a stage of the hot path ({', '.join(hot_names)})",
                fix="name a stage that runs on the stream plane",
                field="stream.hops",
            )
        if hop == hot_names[0]:
            raise DefinitionError(
                f"hop {hop!r} is the first stage: a hop goes between two stages",
                fix="name a later stage of the hot path",
                field="stream.hops",
            )
    dead_letter = options.dead_letter_topic
    if dead_letter is None:
        dead = trigger.delivery.dead_letter
        dead_letter = dead.topic if dead is not None else f"{source.topic}-dead-letter"
    handoff = options.handoff_topic
    if handoff is None and rest:
        handoff = f"{pipeline.name}-handoff"
    topics = {
        "dead_letter_topic": dead_letter,
        "handoff_topic": handoff,
        "results_topic": options.results_topic,
    }
    for name, topic in topics.items():
        if topic is not None:
            check_topic(topic, field=f"stream.{name}")
    workers = _positive(options.workers, field="workers", fix="say e.g. 2")
    partitions = _positive(options.partitions, field="partitions", fix="say e.g. 4")
    if workers > partitions:
        raise DefinitionError(
            f"{workers} workers for {partitions} partitions: a worker without a partition idles",
            fix=f"raise partitions to at least {workers}, or lower workers",
            field="stream.workers",
        )
    return ir.StreamPlane(
        source_topic=source.topic,
        consumer_group=source.consumer_group,
        brokers=source.brokers,
        guarantee=cast(ir.Guarantee, guarantee),
        transaction_interval_ms=interval,
        max_wait_ms=max_wait,
        max_events=_positive(options.max_events, field="max_events", fix="say e.g. 1000"),
        inference_batch=_batches(options.inference_batch, pipeline, hot),
        inference_in_flight=_positive(
            options.inference_in_flight, field="inference_in_flight", fix="say e.g. 4"
        ),
        batches_in_flight=_batches_in_flight(options.batches_in_flight),
        generations_in_flight=_positive(
            options.generations_in_flight, field="generations_in_flight", fix="say e.g. 16"
        ),
        dead_letter_topic=dead_letter,
        handoff_topic=handoff,
        results_topic=options.results_topic,
        hot_tasks=tuple(hot_names),
        handoff_tasks=tuple(t.name for t in rest),
        hops=hops,
        workers=workers,
        partitions=partitions,
        metrics_port=_positive(options.metrics_port, field="metrics_port", fix="say e.g. 9400"),
        target=target,
        image=_image(options.image, pipeline, hot),
        resources=_resources(options),
        topics=_topics(options.topics),
        prometheus_namespace=check_dns1123_label(
            options.prometheus_namespace,
            field="stream.prometheus_namespace",
            what="namespace",
        ),
    )


def _check_publishes(pipeline: ir.Pipeline, hot: list[ir.Task], rest: list[ir.Task]) -> None:
    """A Kafka publish on the hot path becomes a produce inside the worker's transaction: its
    topic must be known when the worker starts, and nothing may read its delivery report."""
    publishers = {t.name for t in hot if pipeline.stage(t.stage).function == KAFKA_PUBLISH_FUNCTION}
    for task in hot:
        if task.name not in publishers:
            continue
        arguments = dict(task.arguments)
        topic = arguments.get("topic")
        if not isinstance(topic, ir.Constant):
            raise DefinitionError(
                "the topic of a Kafka publish on the stream plane must be a constant",
                fix="pass topic='name' (the worker's transaction must know it up front)",
                field="arguments.topic",
                stage=task.name,
            )
        for name in ("brokers",):
            if name in arguments:
                raise DefinitionError(
                    f"a Kafka publish on the stream plane cannot take {name!r}: it produces "
                    "inside the worker's transaction, on the cluster it consumes from",
                    fix=f"drop {name}=",
                    field=f"arguments.{name}",
                    stage=task.name,
                )
    for task in (*hot, *rest, *pipeline.exit_tasks):
        for value in task_refs(task):
            if isinstance(value, ir.TaskOutput) and value.task in publishers:
                raise DefinitionError(
                    f"it reads {value.task!r}'s delivery report ({value.output}), which a "
                    "transactional produce only has after the commit",
                    fix="read the published payload from the stage that made it instead",
                    field="arguments",
                    stage=task.name,
                )


def _drift_tasks(pipeline: ir.Pipeline, tasks: Sequence[ir.Task]) -> list[ir.Task]:
    return [t for t in tasks if pipeline.stage(t.stage).function in DRIFT_FUNCTIONS]


def _refuse_drift(pipeline: ir.Pipeline) -> None:
    """A drift window needs a long-lived worker: on the workflow plane each event is a
    Workflow of its own, with nothing to keep a window in (rtflow.drift's docstring)."""
    for task in _drift_tasks(pipeline, (*pipeline.tasks, *pipeline.exit_tasks)):
        raise DefinitionError(
            "rtflow.drift needs the stream plane: a workflow-plane run sees one event, "
            "never a window of them",
            fix="declare stream=rtflow.Stream(...) on this pipeline, or watch the value in a "
            "stream pipeline",
            field="drift",
            stage=task.name,
        )


def _check_drifts(pipeline: ir.Pipeline, rest: Sequence[ir.Task]) -> None:
    """A drift watch runs in the worker: its value must be known on the hot path."""
    for task in _drift_tasks(pipeline, (*rest, *pipeline.exit_tasks)):
        raise DefinitionError(
            "the drifting value is only known on the workflow plane (after an approval, a "
            "fan-out, a container stage or in the exit handler), where no window is kept",
            fix="watch a payload input or a value a hot-path stage or inference computes",
            field="drift",
            stage=task.name,
        )


def _batches(
    given: int | Mapping[str, int] | None, pipeline: ir.Pipeline, hot: list[ir.Task]
) -> tuple[tuple[str, int], ...]:
    result = []
    servers = {s.name: s for s in pipeline.servers}
    # a generate step streams one request per event (generations_in_flight), never a batch
    inference = [
        t
        for t in hot
        if pipeline.stage(t.stage).inference is not None
        and pipeline.stage(t.stage).function != GENERATE_FUNCTION
    ]
    names = {t.name for t in inference}
    if isinstance(given, Mapping):
        for key in given:
            if key not in names:
                raise DefinitionError(
                    f"inference_batch names {key!r}, not an inference stage of the hot path",
                    fix=f"name one of: {', '.join(sorted(names)) or 'none'}",
                    field="stream.inference_batch",
                )
    for task in inference:
        spec = pipeline.stage(task.stage).inference
        assert spec is not None
        server = servers.get(spec.server)
        model = next((m for m in getattr(server, "models", ()) if m.name == spec.model), None)
        limit = int(getattr(model, "max_batch_size", 0) or 1)
        wanted = given.get(task.name) if isinstance(given, Mapping) else given
        if wanted is None:
            wanted = limit
        size = _positive(wanted, field="inference_batch", fix=f"at most {limit}")
        if size > limit:
            raise DefinitionError(
                f"a client batch of {size} is above model {spec.model!r}'s max_batch_size "
                f"{limit}: Triton would refuse every full batch",
                fix=f"use at most {limit}, or raise the model's max_batch_size",
                field="stream.inference_batch",
                stage=task.name,
            )
        result.append((task.name, size))
    return tuple(result)


def _image(image: object, pipeline: ir.Pipeline, hot: Sequence[ir.Task]) -> str | None:
    """The worker image: the one given, or the image every hot function stage shares (None
    when they have none or several; compiling then asks for one)."""
    if image is not None:
        if not isinstance(image, str) or not image.strip() or any(c.isspace() for c in image):
            raise DefinitionError(
                f"image {image!r} is not an image reference",
                fix="give e.g. image='ghcr.io/acme/fraud-stream:1.0.0'",
                field="stream.image",
            )
        return image
    stages = [pipeline.stage(t.stage) for t in hot]
    builtin = (KAFKA_PUBLISH_FUNCTION, *DRIFT_FUNCTIONS)
    images = sorted(
        {s.image for s in stages if s.image and s.function and s.function not in builtin}
    )
    # Several images: the worker needs one of its own, which only compiling asks for (a local
    # run needs no image).
    return images[0] if len(images) == 1 else None


def _resources(options: Stream) -> ir.Resources:
    return check_resources(
        options.cpu, options.memory, options.cpu_limit, options.memory_limit, prefix="stream."
    )


def _topics(topics: object) -> ir.TopicPolicy | None:
    if topics is None:
        return None
    if not isinstance(topics, KafkaTopics):
        raise DefinitionError(
            f"topics is a {type(topics).__name__}",
            fix="pass topics=rtflow.KafkaTopics(cluster=...), or None to leave topics out",
            field="stream.topics",
        )
    cluster = check_dns1123_label(topics.cluster, field="stream.topics.cluster", what="name")
    replicas = _positive(topics.replicas, field="topics.replicas", fix="say e.g. 3")
    insync = _positive(
        topics.min_insync_replicas, field="topics.min_insync_replicas", fix="say e.g. 2"
    )
    if insync > replicas:
        raise DefinitionError(
            f"min_insync_replicas {insync} is above the {replicas} replicas: no write could "
            "ever be acknowledged",
            fix=f"lower min_insync_replicas to at most {replicas} (replicas - 1 survives a "
            "broker's loss)",
            field="stream.topics.min_insync_replicas",
        )
    hours = 3_600_000
    return ir.TopicPolicy(
        cluster=cluster,
        replicas=replicas,
        min_insync_replicas=insync,
        retention_ms=_positive(
            topics.retention_hours, field="topics.retention_hours", fix="say e.g. 168"
        )
        * hours,
        dead_letter_retention_ms=_positive(
            topics.dead_letter_retention_hours,
            field="topics.dead_letter_retention_hours",
            fix="say e.g. 672",
        )
        * hours,
    )


def _batches_in_flight(value: int) -> int:
    """1 or 2: a third batch would only wait for the second's Triton answer in the worker's
    one thread, holding its events longer without starting them sooner."""
    if isinstance(value, bool) or not isinstance(value, int) or value not in (1, 2):
        raise DefinitionError(
            f"batches_in_flight={value!r}: a worker starts 1 or 2 batches at once",
            fix="say 2 to decode the next batch while Triton answers the current one, else 1",
            field="stream.batches_in_flight",
        )
    return value
