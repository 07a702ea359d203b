"""The workflow plane's part of a stream pipeline: what the hand-off topic starts.

With ``stream=``, the hot path runs in the stream workers, which produce an event that needs the
workflow plane (an approval, a fan-out review, a container stage) to the hand-off topic, as
``{"inputs": {...}, "outputs": {task: {output: text}}, "source": {...}}`` (texts as Argo
parameters hold them; stages/stream/plan.py). This module turns the pipeline into the one the
workflow-plane generators compile unchanged:

- its Kafka trigger reads the hand-off topic (same brokers, TLS and SASL Secrets, the consumer
  group ``<group>-handoff``), maps each pipeline input from ``body.inputs.<name>`` and each hot
  output a later task reads from ``body.outputs.<task>.<output>``; its filters and payload schema
  are gone, since the workers applied them; it reads committed records only, as the workers
  write the topic in their transactions;
- the hot tasks are gone; what read their outputs reads workflow parameters named
  ``<task>-<output>`` instead; the stages no task uses any more are dropped.

So the Sensor starts the WorkflowTemplate with the event's fields as parameters, and the bundle's
cross-resource checks (Sensor parameters to template parameters) hold across both planes.
"""

from __future__ import annotations

from dataclasses import replace

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.stream_ir import task_refs

HANDOFF_TRIGGER = "handoff"


def hot_output_parameter(output: ir.TaskOutput) -> str:
    """The workflow parameter that carries a hot task's output across the hand-off."""
    return f"{output.task}-{output.output}"


def _value(value: ir.Value, hot: frozenset[str]) -> ir.Value:
    if isinstance(value, ir.TaskOutput) and value.task in hot:
        return ir.PipelineInput(hot_output_parameter(value))
    if isinstance(value, ir.JsonObject):
        return ir.JsonObject(tuple((k, _value(v, hot)) for k, v in value.fields))
    if isinstance(value, ir.JsonList):
        return ir.JsonList(tuple(_value(v, hot) for v in value.items))
    if isinstance(value, ir.JsonString):
        inner = _value(value.value, hot)
        assert isinstance(inner, ir.PipelineInput | ir.TaskOutput | ir.WorkflowField)
        return ir.JsonString(inner)
    if isinstance(value, ir.TensorData):
        # a hot answer crosses as a parameter (its JSON text): the same pick reads it
        answer = _value(value.answer, hot)
        assert isinstance(answer, ir.TaskOutput | ir.PipelineInput)
        return ir.TensorData(answer, value.tensor)
    return value


def _condition(condition: ir.Condition | None, hot: frozenset[str]) -> ir.Condition | None:
    if condition is None:
        return None
    if isinstance(condition, ir.Compare):
        return replace(
            condition, left=_value(condition.left, hot), right=_value(condition.right, hot)
        )
    if isinstance(condition, ir.Not):
        part = _condition(condition.part, hot)
        assert part is not None
        return ir.Not(part)
    parts = tuple(p for p in (_condition(c, hot) for c in condition.parts) if p is not None)
    return replace(condition, parts=parts)


def _task(task: ir.Task, hot: frozenset[str]) -> ir.Task:
    return replace(
        task,
        arguments=tuple((name, _value(v, hot)) for name, v in task.arguments),
        depends=tuple(d for d in task.depends if d not in hot),
        when=_condition(task.when, hot),
        fan_out=_value(task.fan_out, hot) if task.fan_out is not None else None,
    )


def workflow_part(pipeline: ir.Pipeline) -> ir.Pipeline | None:
    """The pipeline the workflow plane runs: itself without ``stream=``; the hand-off part
    with it (None when the hot path is the whole pipeline: no workflow-plane objects)."""
    stream = pipeline.stream
    if stream is None:
        return pipeline
    others = [t.name for t in pipeline.triggers if not isinstance(t.source, ir.KafkaSource)]
    if others:
        raise DefinitionError(
            f"trigger {others[0]!r} would start the whole pipeline on the workflow plane while "
            "its hot path runs on the stream plane",
            fix="send those events to the pipeline's Kafka topic (a webhook EventSource can "
            "produce to it), or drop stream=",
            field="triggers",
            pipeline=pipeline.name,
        )
    if not stream.handoff_tasks:
        return None
    assert stream.handoff_topic is not None
    hot = frozenset(stream.hot_tasks)
    rest = [pipeline.task(n) for n in stream.handoff_tasks]
    carried = sorted(
        {v for t in [*rest, *pipeline.exit_tasks] for v in task_refs(t)
         if isinstance(v, ir.TaskOutput) and v.task in hot},
        key=lambda v: (v.task, v.output),
    )  # fmt: skip
    names = {p.name for p in pipeline.inputs}
    params = []
    for output in carried:
        name = hot_output_parameter(output)
        if name in names:
            raise DefinitionError(
                f"the hand-off carries {output.task}'s output {output.output!r} as the "
                f"parameter {name!r}, which is also a pipeline input",
                fix=f"rename the input {name!r}",
                field="inputs",
                pipeline=pipeline.name,
            )
        names.add(name)
        produced = pipeline.stage(pipeline.task(output.task).stage).output(output.output)
        params.append(ir.Param(name, produced.type))
    (trigger,) = [t for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
    source = trigger.source
    assert isinstance(source, ir.KafkaSource)
    mappings = [
        ir.InputMapping(p.name, f"body.inputs.{p.name}", p.default) for p in pipeline.inputs
    ] + [
        ir.InputMapping(hot_output_parameter(o), f"body.outputs.{o.task}.{o.output}")
        for o in carried
    ]
    handoff = replace(
        trigger,
        name=HANDOFF_TRIGGER,
        source=replace(
            source,
            topic=stream.handoff_topic,
            consumer_group=f"{stream.consumer_group}-handoff",
            json_body=True,
            # the workers write the hand-off topic in their transactions: an aborted batch's
            # hand-offs must start nothing (Sarama, the EventSource's client, reads
            # uncommitted records unless told otherwise)
            read_committed=True,
        ),
        inputs=tuple(mappings),
        data_filters=(),
        expr_filters=(),
        payload_schema=(),
    )
    tasks = tuple(_task(t, hot) for t in rest)
    exit_tasks = tuple(_task(t, hot) for t in pipeline.exit_tasks)
    used = {t.stage for t in (*tasks, *exit_tasks)}
    return replace(
        pipeline,
        inputs=(*pipeline.inputs, *params),
        stages=tuple(s for s in pipeline.stages if s.name in used),
        tasks=tasks,
        exit_tasks=exit_tasks,
        triggers=(handoff,),
        stream=None,
    )
