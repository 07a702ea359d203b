"""From a recorded pipeline to validated IR.

Every rule about what makes a pipeline definition wrong lives here, so that each error can name
the pipeline, the stage and the field it is about. The pipeline function is run once to record
its calls; stage functions are only inspected (signature, annotations), never called.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import cast

from rtflow import ir, stage_ir
from rtflow.approval_ir import approval_ir
from rtflow.argocd import build_argocd
from rtflow.egress import check_egress
from rtflow.environments import build_environments
from rtflow.errors import DefinitionError
from rtflow.graph_rules import check_acyclic, comparison_quoted, flatten
from rtflow.http_step import http_body, http_ir
from rtflow.inference_args import picked_output, served_model, tensor_elements, tensor_value
from rtflow.literals import Resolved, check_feeds, holds_ref, resolve_literal, scalar_type
from rtflow.names import check_dns1123_label
from rtflow.param_types import ParamType, encode, list_of
from rtflow.pipeline import Pipeline
from rtflow.quantity import check_quantity, check_seconds
from rtflow.recording import (
    All,
    Any_,
    ApprovalDef,
    Call,
    Compare,
    Cond,
    Each,
    HttpDef,
    InferenceDef,
    InputRef,
    Negate,
    OutputRef,
    Ref,
    TensorRef,
    Truthy,
    WorkflowRef,
    recording,
)
from rtflow.retrieval import stage_egress
from rtflow.stage import StageDef
from rtflow.stream_ir import build_stream
from rtflow.stream_layout import stream_worker_names
from rtflow.trigger_ir import build_triggers
from rtflow.triggers import EventBus

POD_GC = ("OnPodCompletion", "OnPodSuccess", "OnWorkflowCompletion", "OnWorkflowSuccess")
_WORKFLOW_FIELD_TYPES: dict[str, ParamType] = {
    "name": ParamType("str"),
    "namespace": ParamType("str"),
    "uid": ParamType("str"),
    "status": ParamType("str"),
    "duration": ParamType("float"),
}
_EXIT_ONLY_FIELDS = frozenset({"status", "duration"})


def build_pipeline(definition: Pipeline) -> ir.Pipeline:
    try:
        return _PipelineBuilder(definition).build()
    except DefinitionError as error:
        raise error.located(pipeline=definition.name) from None


class _PipelineBuilder:
    def __init__(self, definition: Pipeline) -> None:
        self.definition = definition
        self.options = definition.options
        self.stage_of: dict[int, ir.Stage] = {}
        self.task_of: dict[int, str] = {}
        self.input_types: dict[str, ParamType] = {}
        self.servers: dict[str, object] = {}

    def build(self) -> ir.Pipeline:
        name = check_dns1123_label(self.definition.name, field="name", what="pipeline name")
        inputs = self._pipeline_inputs()
        calls, exit_calls = self._record(inputs)
        all_calls = [*calls, *exit_calls]
        if not calls:
            raise DefinitionError(
                "the pipeline calls no stage",
                fix="call at least one @rtflow.stage or rtflow.container stage in its function",
                field="function",
            )
        stages = self._stages(all_calls)
        self._name_tasks(all_calls)
        self.input_types = {p.name: p.type for p in inputs}
        tasks = [self._task(c) for c in calls]
        exit_tasks = [self._task(c) for c in exit_calls]
        check_acyclic(tasks)
        check_acyclic(exit_tasks)
        options = self.options
        bus_name, bus = _event_bus(options.event_bus)
        triggers = build_triggers(options.triggers, name, inputs)
        servers = [self.servers[n] for n in sorted(self.servers)]
        built = ir.Pipeline(
            name=name,
            source=getattr(self.definition.function, "__module__", "?"),
            inputs=tuple(inputs),
            stages=tuple(sorted(stages, key=lambda s: s.name)),
            tasks=tuple(sorted(tasks, key=lambda t: t.name)),
            exit_tasks=tuple(sorted(exit_tasks, key=lambda t: t.name)),
            namespace=check_dns1123_label(options.namespace, field="namespace", what="namespace")
            if options.namespace is not None
            else None,
            description=options.description,
            parallelism=stage_ir.positive_int(options.parallelism, field="parallelism"),
            latency_budget_ms=stage_ir.positive_int(
                options.latency_budget_ms, field="latency_budget_ms"
            ),
            deadline_seconds=check_seconds(options.deadline, field="deadline"),
            ttl=ir.Ttl(
                after_success=check_seconds(options.ttl_after_success, field="ttl_after_success"),
                after_failure=check_seconds(options.ttl_after_failure, field="ttl_after_failure"),
                after_completion=check_seconds(
                    options.ttl_after_completion, field="ttl_after_completion"
                ),
            ),
            pod_gc=cast(ir.PodGcStrategy, stage_ir.one_of(options.pod_gc, POD_GC, field="pod_gc")),
            labels=stage_ir.label_pairs(options.labels),
            annotations=stage_ir.annotation_pairs(options.annotations),
            service_account=stage_ir.service_account(options.service_account) or f"{name}-workflow",
            owns_service_account=options.service_account is None,
            triggers=triggers,
            event_bus_name=bus_name,
            event_bus=bus,
            servers=tuple(self.servers[n] for n in sorted(self.servers)),
            argocd=build_argocd(options.argocd),
            # what the pipeline declares, and the stores its built-in stages use
            egress=stage_egress((c.definition for c in all_calls), check_egress(options.egress)),
        )
        function = self.definition.function
        target = f"{built.source}:{getattr(function, '__name__', name)}"
        stream = build_stream(options.stream, built, target=target)
        # Environments last: they may name the stream plane's image and workers.
        environments = build_environments(
            options.environments,
            stages=stages,
            servers=servers,
            triggers=triggers,
            stream=stream,
            stream_workers=stream_worker_names(replace(built, stream=stream))
            if stream is not None
            else (),
        )
        return replace(built, stream=stream, environments=environments)

    # Pipeline inputs and recording

    def _pipeline_inputs(self) -> list[ir.Param]:
        return stage_ir.function_inputs(self.definition.function, what="pipeline input")

    def _record(self, inputs: list[ir.Param]) -> tuple[list[Call], list[Call]]:
        placeholders = {p.name: InputRef(p.name) for p in inputs}
        with recording() as recorder:
            try:
                self.definition.function(**placeholders)
            except DefinitionError:
                raise
            except Exception as exc:  # the user's pipeline function is user code
                raise DefinitionError(
                    f"the pipeline function raised {type(exc).__name__}: {exc}",
                    fix="a pipeline function only calls stages and rtflow.when/for_each/"
                    "approval/on_exit; compute values inside a stage",
                    field="function",
                ) from None
        return recorder.calls, recorder.exit_calls

    # Stages

    def _stages(self, calls: list[Call]) -> list[ir.Stage]:
        """One IR stage per distinct definition; two definitions may not share a name."""
        built_for: dict[int, ir.Stage] = {}
        owner: dict[str, StageDef | ApprovalDef | InferenceDef | HttpDef] = {}
        for call in calls:
            definition = call.definition
            if id(definition) not in built_for:
                if isinstance(definition, ApprovalDef):
                    built = approval_ir(definition)
                elif isinstance(definition, HttpDef):
                    built = http_ir(definition, self.options)
                elif isinstance(definition, InferenceDef):
                    try:
                        built = stage_ir.inference_ir(
                            definition, self.options.namespace, self.options.default_timeout
                        )
                    except DefinitionError as error:
                        raise error.located(stage=call.stage_name) from None
                    self.servers.setdefault(
                        definition.server.name,
                        stage_ir.server_in(definition.server, self.options.namespace),
                    )
                else:
                    built = stage_ir.stage_ir(definition, self.options)
                if built.name in owner:
                    raise DefinitionError(
                        f"two different stages are named {built.name!r}",
                        fix="give one of them another name (name=... on the decorator)",
                        stage=built.name,
                        field="name",
                    )
                owner[built.name] = definition
                built_for[id(definition)] = built
            self.stage_of[id(call)] = built_for[id(definition)]
        return list(built_for.values())

    def _name_tasks(self, calls: list[Call]) -> None:
        seen: dict[str, int] = {}
        taken: set[str] = set()
        for call in calls:
            base = self.stage_of[id(call)].name
            seen[base] = seen.get(base, 0) + 1
            name = base if seen[base] == 1 else f"{base}-{seen[base]}"
            if name in taken:
                raise DefinitionError(
                    f"the task name {name!r} is used twice (a stage called several times is "
                    "numbered -2, -3, ...)",
                    fix="rename the stage whose name ends in a number",
                    stage=base,
                    field="name",
                )
            check_dns1123_label(name, field="name", what="task name")
            taken.add(name)
            self.task_of[id(call)] = name

    # Tasks

    def _task(self, call: Call) -> ir.Task:
        stage = self.stage_of[id(call)]
        task_name = self.task_of[id(call)]
        try:
            return self._task_unlocated(call, stage, task_name)
        except DefinitionError as error:
            raise error.located(stage=task_name) from None

    def _task_unlocated(
        self,
        call: Call,
        stage: ir.Stage,
        task_name: str,
    ) -> ir.Task:
        if stage.kind == "function" and isinstance(call.definition, InferenceDef):
            return self._grpc_inference_task(call, stage, task_name)
        declared = {p.name: p for p in stage.inputs}
        unknown = sorted(set(call.arguments) - set(declared))
        if unknown:
            raise DefinitionError(
                f"it has no input {unknown[0]!r}",
                fix=f"its inputs are: {', '.join(declared) or 'none'}",
                field=unknown[0],
            )
        producers: list[Call] = []
        arguments: list[tuple[str, ir.Value]] = []
        fan_out: ir.Value | None = None
        fanned = False
        tensors = self._tensors(call, stage)
        for param in stage.inputs:
            if param.name not in call.arguments:
                if param.default is None:
                    raise DefinitionError(
                        f"input {param.name!r} ({param.type}) is not provided",
                        fix=f"pass {param.name}=... when calling it, or give the "
                        "parameter a default",
                        field=param.name,
                    )
                continue
            raw = call.arguments[param.name]
            if isinstance(raw, Each):
                if fanned:
                    raise DefinitionError(
                        "a call can fan out over one input only",
                        fix="pass the item to one argument only",
                        field=param.name,
                    )
                fanned = True
                source = self._fan_out_source(raw, call, param)
                fan_out = source.value
                producers += source.producers
                arguments.append((param.name, ir.Item()))
                continue
            if isinstance(call.definition, HttpDef):  # the body: text, or JSON text
                resolve = functools.partial(self._resolve, consumer=call, field=param.name)
                resolved = http_body(raw, call.definition, resolve)
            else:
                resolved = self._resolve(raw, call, param.name)
                if param.name in tensors:
                    resolved = tensor_value(resolved, raw, param, *tensors[param.name])
                check_feeds(resolved, raw, param)
            producers += resolved.producers
            arguments.append((param.name, resolved.value))

        conditions = [self._condition(c, call, producers) for c in call.conditions]
        when: ir.Condition | None = None
        if len(conditions) == 1:
            when = conditions[0]
        elif conditions:
            when = ir.AllOf(flatten(conditions, ir.AllOf))
        for other in call.explicit_after:
            if id(other) not in self.task_of:
                raise DefinitionError(
                    "after() names a call from another pipeline",
                    fix="only order calls made in this pipeline function",
                    field="after",
                )
            if other.on_exit != call.on_exit:
                raise DefinitionError(
                    "after() links the exit handler with the main DAG",
                    fix="exit-handler stages already run after every main stage",
                    field="after",
                )
            producers.append(other)
        depends = sorted({self.task_of[id(p)] for p in producers if p is not call})
        if any(p is call for p in producers):
            raise DefinitionError(
                "the stage depends on itself", fix="remove the self-reference", field="after"
            )
        return ir.Task(
            name=task_name,
            stage=stage.name,
            arguments=tuple(arguments),
            depends=tuple(depends),
            when=when,
            fan_out=fan_out,
        )

    def _grpc_inference_task(self, call: Call, stage: ir.Stage, task_name: str) -> ir.Task:
        """The tensors, each checked against the model's declaration, as one JSON object."""
        definition = call.definition
        assert isinstance(definition, InferenceDef)
        assert stage.inference is not None
        model = served_model(definition.server, stage.inference.model)
        declared = {p.name: p for p in stage_ir.tensor_params(model)}
        unknown = sorted(set(call.arguments) - set(declared))
        missing = sorted(set(declared) - set(call.arguments))
        if unknown or missing:
            raise DefinitionError(
                f"model {model.name!r} has no input {unknown[0]!r}"
                if unknown
                else f"model input {missing[0]!r} is not given",
                fix=f"pass exactly the model's inputs: {', '.join(declared)}",
                field=(unknown or missing)[0],
            )
        producers: list[Call] = []
        fields: list[tuple[str, ir.Value]] = []
        tensors = self._tensors(call, stage)
        for name, param in declared.items():
            raw = call.arguments[name]
            resolved = tensor_value(self._resolve(raw, call, name), raw, param, *tensors[name])
            check_feeds(resolved, raw, param)
            producers += resolved.producers
            value = resolved.value
            if isinstance(value, ir.Constant) and resolved.type is None:
                value = ir.Constant(encode(raw))
            fields.append((name, value))
        conditions = [self._condition(c, call, producers) for c in call.conditions]
        when: ir.Condition | None = None
        if len(conditions) == 1:
            when = conditions[0]
        elif conditions:
            when = ir.AllOf(flatten(conditions, ir.AllOf))
        producers += [c for c in call.explicit_after]
        return ir.Task(
            name=task_name,
            stage=stage.name,
            arguments=(("tensors", ir.JsonObject(tuple(fields))),),
            depends=tuple(sorted({self.task_of[id(p)] for p in producers if p is not call})),
            when=when,
        )

    def _tensors(self, call: Call, stage: ir.Stage) -> dict[str, tuple[int | None, str]]:
        """An inference call's input tensors: element counts and shapes (else empty)."""
        definition = call.definition
        if not isinstance(definition, InferenceDef) or stage.inference is None:
            return {}
        model = served_model(definition.server, stage.inference.model)
        return tensor_elements(model, definition.shapes)

    def _fan_out_source(self, marker: Each, call: Call, param: ir.Param) -> Resolved:
        items = marker.items
        if isinstance(items, Ref):
            source = self._resolve(items, call, param.name)
            if source.type is not None and source.type.kind != "list":
                raise DefinitionError(
                    f"rtflow.for_each() needs a list, got a {source.type}",
                    fix="fan out over a list-typed input or output",
                    field=param.name,
                )
            item_type = source.type.item if source.type is not None else None
        elif isinstance(items, (list, tuple)):
            if not items:
                raise DefinitionError(
                    "rtflow.for_each() over an empty list runs nothing",
                    fix="give at least one item",
                    field=param.name,
                )
            if not ParamType("list").accepts_value(list(items)):
                raise DefinitionError(
                    "rtflow.for_each() items must be JSON values",
                    fix="use strings, numbers, booleans, dicts or lists",
                    field=param.name,
                )
            source = Resolved(ir.Constant(encode(list(items))), None)
            item_type = None
            bad = [v for v in items if not param.type.accepts_value(v)]
            if bad:
                raise DefinitionError(
                    f"rtflow.for_each() item {bad[0]!r} is not a {param.type}",
                    fix=f"give items of type {param.type}",
                    field=param.name,
                )
        else:
            raise DefinitionError(
                f"rtflow.for_each() needs a list, got {type(items).__name__}",
                fix="pass a list literal or a list-typed input or output",
                field=param.name,
            )
        if item_type is not None and not param.type.accepts(item_type):
            raise DefinitionError(
                f"items are {item_type} but input {param.name!r} is {param.type}",
                fix=f"fan out over a list[{param.type}]",
                field=param.name,
            )
        return source

    def _resolve(self, raw: object, consumer: Call, field: str) -> Resolved:
        if isinstance(raw, Each):
            raise DefinitionError(
                "the for_each item can only be passed as a stage argument",
                fix="pass it directly, e.g. lambda m: review(model=m)",
                field=field,
            )
        if isinstance(raw, InputRef):
            return Resolved(ir.PipelineInput(raw.name), self.input_types[raw.name])
        if isinstance(raw, WorkflowRef):
            if raw.field in _EXIT_ONLY_FIELDS and not consumer.on_exit:
                raise DefinitionError(
                    f"rtflow.workflow.{raw.field} is only known in the exit handler",
                    fix="read it in a stage called inside `with rtflow.on_exit():`",
                    field=field,
                )
            return Resolved(
                ir.WorkflowField(cast(ir.WorkflowFieldName, raw.field)),
                _WORKFLOW_FIELD_TYPES[raw.field],
            )
        if isinstance(raw, OutputRef):
            return self._output(raw.call, raw.output, consumer, field)
        if isinstance(raw, TensorRef):
            return self._tensor_output(raw, consumer, field)
        if isinstance(raw, Call):
            producer_stage = self._stage_for(raw, field)
            if len(producer_stage.outputs) != 1:
                outputs = ", ".join(o.name for o in producer_stage.outputs) or "none"
                raise DefinitionError(
                    f"{self.task_of[id(raw)]!r} has {len(producer_stage.outputs)} outputs "
                    f"({outputs}), so it cannot stand for one value",
                    fix="pass one output, e.g. call.<output>"
                    if producer_stage.outputs
                    else "give that stage a return annotation",
                    field=field,
                )
            return self._output(raw, producer_stage.outputs[0].name, consumer, field)
        if isinstance(raw, Ref):  # pragma: no cover - every Ref kind is handled above
            raise TypeError(raw)
        if isinstance(raw, list | tuple | Mapping) and holds_ref(raw):
            return resolve_literal(raw, lambda ref: self._resolve(ref, consumer, field), field)
        return Resolved(ir.Constant(encode(raw)), None)

    def _stage_for(self, producer: Call, field: str) -> ir.Stage:
        if id(producer) not in self.stage_of:
            raise DefinitionError(
                "the value comes from a call made outside this pipeline function",
                fix="call the stage inside this pipeline's function",
                field=field,
            )
        return self.stage_of[id(producer)]

    def _output(self, producer: Call, output: str, consumer: Call, field: str) -> Resolved:
        stage = self._stage_for(producer, field)
        names = [o.name for o in stage.outputs]
        if output not in names:
            raise DefinitionError(
                f"{self.task_of[id(producer)]!r} has no output {output!r}",
                fix=f"its outputs are: {', '.join(names) or 'none'}",
                field=field,
            )
        if producer.on_exit != consumer.on_exit:
            raise DefinitionError(
                "the exit handler cannot read outputs of the main DAG (or the reverse)",
                fix="pass what it needs through rtflow.workflow fields or pipeline inputs",
                field=field,
            )
        missing = [c for c in producer.conditions if all(c is not d for d in consumer.conditions)]
        if missing:
            raise DefinitionError(
                f"it reads {self.task_of[id(producer)]!r}, which runs only under a "
                "`when` this stage is not under, so the value may not exist",
                fix="call it inside the same `with rtflow.when(...)` block",
                field=field,
            )
        out_type = stage.output(output).type
        if _fans_out(producer):
            out_type = list_of(out_type)
        # an http step's (inference or any URL) output is Argo's outputs.result: the body
        value = ir.TaskOutput(
            self.task_of[id(producer)], output, result=stage.kind in ("inference", "http")
        )
        return Resolved(value, out_type, (producer,))

    def _tensor_output(self, ref: TensorRef, consumer: Call, field: str) -> Resolved:
        """``scored.output("risk")``: one output tensor's flat data, typed by its data type."""
        stage = self._stage_for(ref.call, field)
        answer = self._output(ref.call, stage.outputs[0].name, consumer, field)
        if _fans_out(ref.call):
            raise DefinitionError(
                f"{self.task_of[id(ref.call)]!r} fans out, so it has one answer per item",
                fix="read the answers (a list) in a stage instead of .output()",
                field=field,
            )
        assert isinstance(ref.call.definition, InferenceDef) and stage.inference is not None
        model = served_model(ref.call.definition.server, stage.inference.model)
        return picked_output(model, answer, ref.tensor, field)

    # Conditions

    def _condition(self, cond: Cond, call: Call, producers: list[Call]) -> ir.Condition:
        if isinstance(cond, All):
            parts = [self._condition(c, call, producers) for c in cond.parts]
            return ir.AllOf(flatten(parts, ir.AllOf))
        if isinstance(cond, Any_):
            parts = [self._condition(c, call, producers) for c in cond.parts]
            return ir.AnyOf(flatten(parts, ir.AnyOf))
        if isinstance(cond, Negate):
            return ir.Not(self._condition(cond.part, call, producers))
        if isinstance(cond, Truthy):
            left = self._condition_operand(cond.ref, call, producers)
            if left.type is not None and left.type.kind != "bool":
                raise DefinitionError(
                    f"`when` needs a bool, got a {left.type}",
                    fix="compare it, e.g. `with rtflow.when(score > 0.9):`",
                    field="when",
                )
            return ir.Compare(left.value, "==", ir.Constant("true"), quoted=False)
        assert isinstance(cond, Compare)
        left = self._condition_operand(cond.left, call, producers)
        if isinstance(cond.right, Ref):
            right = self._condition_operand(cond.right, call, producers)
            right_type = right.type
        else:
            right = Resolved(ir.Constant(encode(cond.right)), None)
            right_type = scalar_type(cond.right)
        return ir.Compare(
            left.value,
            cast(ir.CompareOp, cond.op),
            right.value,
            quoted=comparison_quoted(cond.op, left.type, right_type, cond.right),
        )

    def _condition_operand(self, ref: Ref, call: Call, producers: list[Call]) -> Resolved:
        resolved = self._resolve(ref, call, "when")
        producers += resolved.producers
        return resolved


def _event_bus(bus: object) -> tuple[str, ir.EventBus | None]:
    if isinstance(bus, str):
        return check_dns1123_label(bus, field="event_bus", what="EventBus name"), None
    if not isinstance(bus, EventBus):
        raise DefinitionError(
            f"event_bus must be a name or rtflow.EventBus, got {type(bus).__name__}",
            fix="pass event_bus='default' (existing) or event_bus=rtflow.EventBus(...)",
            field="event_bus",
        )
    name = check_dns1123_label(bus.name, field="event_bus.name", what="EventBus name")
    if isinstance(bus.replicas, bool) or not isinstance(bus.replicas, int) or bus.replicas < 3:
        raise DefinitionError(
            f"a JetStream EventBus needs at least 3 replicas, got {bus.replicas!r}",
            fix="use replicas=3 (or more)",
            field="event_bus.replicas",
        )
    if not isinstance(bus.version, str) or bus.version in ("", "latest"):
        raise DefinitionError(
            f"EventBus version {bus.version!r} is not a pinned JetStream release; it would "
            "change under a running bus when Argo Events is upgraded",
            fix="give a version from the Argo Events controller's config, e.g. '2.10.29'",
            field="event_bus.version",
        )
    storage = check_quantity(bus.storage, kind="memory", field="event_bus.storage")
    return name, ir.EventBus(name, bus.replicas, bus.version, storage, bus.storage_class)


def _fans_out(call: Call) -> bool:
    return any(isinstance(v, Each) for v in call.arguments.values())
