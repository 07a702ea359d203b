"""What a stream worker does to a batch of Kafka messages, as pure-ish Python over the IR.

The hot path's tasks run *column-wise*: every event of the batch goes through the first task,
then the second, and so on, so an inference task sees the whole batch at once and Triton gets
one request per ``inference_batch`` events instead of one per event. Between fused stages values
stay Python objects (no JSON text round trip): the workflow plane's encode/decode would cost
more than the stages themselves at 20,000 events/s.

The Argo semantics are the workflow plane's (:mod:`rtflow.stages.semantics`): ``when``
conditions compare the texts Argo would substitute, ``depends`` skips and omits alike, and the
trigger's filters and input mappings are the Sensor's. A message that cannot be processed is
not an error of the batch: it becomes a dead-letter record with the reason and the run goes on.
"""

from __future__ import annotations

import json
import re
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from random import getrandbits
from typing import Any

from rtflow import ir
from rtflow.param_types import ParamType, encode
from rtflow.stages import runtime, semantics
from rtflow.stages.runtime import BadInput
from rtflow.stream_ir import KAFKA_PUBLISH_FUNCTION

Headers = list[tuple[str, bytes]]

# Why an event went to the dead-letter topic (the ``rtflow-reason`` header, a metric label).
NOT_JSON = "not_json"
PAYLOAD = "payload"  # does not fit the trigger's mapping, the pipeline's inputs or the schema
BAD_INPUT = "bad_input"  # a stage raised BadInput, or an input does not fit a stage
STAGE_FAILED = "stage_failed"  # a stage raised anything else (a bug: retrying cannot help)
INFERENCE_REJECTED = "inference_rejected"  # Triton refused this event's tensors
REASONS = (NOT_JSON, PAYLOAD, BAD_INPUT, STAGE_FAILED, INFERENCE_REJECTED)


class DependencyError(RuntimeError):
    """A dependency (Triton, the broker) failed for the whole batch: retry it, commit nothing
    past it. Never a property of one event."""


@dataclass(frozen=True)
class Record:
    """One message to produce inside the batch's transaction."""

    topic: str
    value: bytes
    key: bytes | None = None
    headers: Headers = field(default_factory=list)


@dataclass
class Message:
    """The part of a consumed Kafka message the plan reads (so tests need no broker)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: Headers = field(default_factory=list)
    timestamp_ms: int = 0


@dataclass
class EventState:
    """One event on its way through the hot path."""

    message: Message
    body: Any = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    phases: dict[str, semantics.Phase] = field(default_factory=dict)
    traceparent: str = ""
    dead: tuple[str, str, str] | None = None  # (reason, stage, detail)

    def fail(self, reason: str, stage: str, detail: str) -> None:
        self.dead = (reason, stage, detail)


@dataclass
class BatchResult:
    records: list[Record]
    processed: int = 0
    filtered: int = 0
    dead_lettered: dict[str, int] = field(default_factory=dict)
    handed_off: int = 0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)


def _kind_fits(kind: str, value: Any) -> bool:
    """The Python type check of a value on an edge, without the JSON walk of
    ``ParamType.accepts_value`` (values here come from JSON or were checked when produced)."""
    if kind == "str":
        return isinstance(value, str)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "dict":
        return isinstance(value, dict)
    return isinstance(value, list | tuple)


Getter = Callable[[EventState], Any]


def value_getter(value: ir.Value) -> Getter:
    """A function reading a task argument's Python value from an event's state."""
    if isinstance(value, ir.Constant):
        text = value.text
        return lambda _e: text
    if isinstance(value, ir.PipelineInput):
        name = value.name
        return lambda e: e.inputs[name]
    if isinstance(value, ir.TaskOutput):
        task, output = value.task, value.output
        return lambda e: e.outputs[task][output]
    if isinstance(value, ir.JsonObject):
        parts = [(k, value_getter(v)) for k, v in value.fields]
        return lambda e: {k: g(e) for k, g in parts}
    raise ValueError(f"{value!r} cannot be read on the stream plane")


def _constant_getter(text: str, param_type: ParamType | None) -> Getter:
    constant = _constant(text, param_type)
    return lambda _e: constant


def _constant(text: str, param_type: ParamType | None) -> Any:
    if param_type is None or param_type.kind == "str":
        return text
    return json.loads(text)


def _text_getter(value: ir.Value) -> Callable[[EventState], str]:
    """The text Argo substitutes for a value; ValueMissing when its task did not run."""
    if isinstance(value, ir.TaskOutput):
        task, output = value.task, value.output

        def output_text(e: EventState) -> str:
            try:
                return encode(e.outputs[task][output])
            except KeyError:
                raise semantics.ValueMissing(f"tasks.{task}.outputs.parameters.{output}") from None

        return output_text
    if isinstance(value, ir.Constant):
        text = value.text
        return lambda _e: text
    getter = value_getter(value)
    return lambda e: encode(getter(e))


def compile_condition(condition: ir.Condition) -> Callable[[EventState], bool]:
    """A ``when`` as a function of an event, with :func:`semantics.evaluate`'s rules (texts
    compared as govaluate reads them) but without re-walking the IR for every event."""
    if isinstance(condition, ir.Compare):
        left, right, op = _text_getter(condition.left), _text_getter(condition.right), condition.op
        if condition.quoted:
            tags = {
                id(side): f"{{{{tasks.{v.task}.outputs.parameters.{v.output}}}}}"
                for side, v in ((left, condition.left), (right, condition.right))
                if isinstance(v, ir.TaskOutput)
            }

            def text_or_tag(getter: Callable[[EventState], str], e: EventState) -> str:
                try:
                    return getter(e)
                except semantics.ValueMissing:
                    return tags[id(getter)]  # Argo leaves an unresolved tag as its text

            def quoted(e: EventState) -> bool:
                a, b = text_or_tag(left, e), text_or_tag(right, e)
                if "'" in a or "'" in b:
                    raise semantics.ConditionError("a quoted value contains a single quote")
                return semantics.compare(a, op, b)

            return quoted
        literal = semantics.literal
        return lambda e: semantics.compare(literal(left(e)), op, literal(right(e)))
    if isinstance(condition, ir.Not):
        part = compile_condition(condition.part)
        return lambda e: not part(e)
    parts = [compile_condition(p) for p in condition.parts]
    if isinstance(condition, ir.AllOf):
        return lambda e: all(p(e) for p in parts)
    return lambda e: any(p(e) for p in parts)


@dataclass
class Gate:
    """Whether a task runs for an event: ``depends`` and ``when``, as Argo decides."""

    task: ir.Task
    stage: ir.Stage

    def __post_init__(self) -> None:
        self._depends = self.task.depends
        self._when = compile_condition(self.task.when) if self.task.when is not None else None

    def ready(self, event: EventState) -> bool:
        """Whether the task runs for this event (else its phase is Skipped or Omitted)."""
        if self._depends:
            phases = event.phases
            for name in self._depends:
                if phases.get(name) not in semantics.DONE_PHASES:
                    event.phases[self.task.name] = "Omitted"
                    return False
        if self._when is not None:
            try:
                runs = self._when(event)
            except (semantics.ConditionError, semantics.ValueMissing) as exc:
                event.fail(BAD_INPUT, self.task.name, f"when: {exc}")
                return False
            if not runs:
                event.phases[self.task.name] = "Skipped"
                return False
        return True


@dataclass
class Step(Gate):
    """One hot-path task: how to gather its arguments, and running it over a batch."""

    def __post_init__(self) -> None:
        super().__post_init__()
        types = {p.name: p.type for p in self.stage.inputs}
        self.getters: list[tuple[str, Getter, ParamType | None]] = []
        for name, value in self.task.arguments:
            if isinstance(value, ir.Constant):
                self.getters.append((name, _constant_getter(value.text, types.get(name)), None))
            else:
                self.getters.append((name, value_getter(value), types.get(name)))

    def arguments(self, event: EventState) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for name, getter, param_type in self.getters:
            value = getter(event)
            if param_type is not None and not _kind_fits(param_type.kind, value):
                raise BadInput(f"input {name!r} is not a {param_type}")
            if param_type is not None and param_type.kind == "float" and isinstance(value, int):
                value = float(value)
            arguments[name] = value
        return arguments

    def run(self, events: Sequence[EventState]) -> None:
        raise NotImplementedError


class FunctionStep(Step):
    """A Python stage function, called in this process with Python values."""

    def __post_init__(self) -> None:
        super().__post_init__()
        assert self.stage.function is not None
        self.prepared = runtime.Prepared(runtime.load(self.stage.function))
        self.fields = self.prepared.output_fields
        self.output = self.prepared.output_type

    def run(self, events: Sequence[EventState]) -> None:
        function = self.prepared.function
        name = self.task.name
        fields = self.fields
        output = self.output
        for event in events:
            if event.dead is not None or not self.ready(event):
                continue
            try:
                result = function(**self.arguments(event))
            except BadInput as exc:
                event.fail(BAD_INPUT, name, str(exc))
                continue
            except Exception as exc:
                event.fail(STAGE_FAILED, name, _error(exc))
                continue
            if fields is not None:
                event.outputs[name] = dict(zip(fields, result, strict=True))
            elif output is not None:
                if not _kind_fits(output.kind, result):
                    event.fail(
                        STAGE_FAILED,
                        name,
                        f"the function returned {type(result).__name__}, declared {output}",
                    )
                    continue
                event.outputs[name] = {"result": result}
            else:
                event.outputs[name] = {}
            event.phases[name] = "Succeeded"


class PublishStep(Step):
    """The built-in Kafka publish, as a produce inside the worker's transaction."""

    def __post_init__(self) -> None:
        super().__post_init__()
        arguments = dict(self.task.arguments)
        topic = arguments["topic"]
        assert isinstance(topic, ir.Constant)
        self.topic = topic.text
        key_field = arguments.get("key_field")
        self.key_field = key_field.text if isinstance(key_field, ir.Constant) else ""
        self.payload = value_getter(arguments["payload"])

    def run(self, events: Sequence[EventState]) -> None:
        raise AssertionError("publish steps produce through Plan.execute")

    def record(self, event: EventState) -> Record | None:
        payload = self.payload(event)
        if not isinstance(payload, dict):
            event.fail(BAD_INPUT, self.task.name, "input 'payload' is not a dict")
            return None
        key: bytes | None = None
        if self.key_field:
            if self.key_field not in payload:
                event.fail(BAD_INPUT, self.task.name, f"the payload has no {self.key_field!r}")
                return None
            key = str(payload[self.key_field]).encode()
        try:
            value = _dumps(payload).encode()
        except (TypeError, ValueError) as exc:
            event.fail(STAGE_FAILED, self.task.name, f"payload is not JSON: {exc}")
            return None
        event.outputs[self.task.name] = {}
        event.phases[self.task.name] = "Succeeded"
        return Record(self.topic, value, key, [("traceparent", event.traceparent.encode())])


_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
"""One encoder made once: ``json.dumps`` builds one per call when given options."""


def _error(exc: BaseException) -> str:
    """The exception and where it was raised: a dead letter should say where to look."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class InferenceStep(Step):
    """An inference task: the batch's tensors go to Triton together (:mod:`.triton`)."""

    batcher: Any = None  # a TritonBatcher, bound by Plan.bind_triton

    def __post_init__(self) -> None:
        super().__post_init__()
        # The http step's inputs are the tensors; the gRPC client stage takes them as one dict.
        self.packed = self.stage.kind == "function"
        self.output_name = self.stage.outputs[0].name

    def run(self, events: Sequence[EventState]) -> None:
        name = self.task.name
        ready: list[EventState] = []
        rows: list[Mapping[str, Any]] = []
        for event in events:
            if event.dead is not None or not self.ready(event):
                continue
            try:
                arguments = self.arguments(event)
            except BadInput as exc:
                event.fail(BAD_INPUT, name, str(exc))
                continue
            row = arguments["tensors"] if self.packed else arguments
            ready.append(event)
            rows.append(row)
        if not ready:
            return
        answers = self.batcher.infer(rows)
        for event, answer in zip(ready, answers, strict=True):
            if isinstance(answer, dict):
                event.outputs[name] = {self.output_name: answer}
                event.phases[name] = "Succeeded"
            else:
                event.fail(INFERENCE_REJECTED, name, answer.reason)


_MISSING = object()


def path_keys(path: str) -> tuple[str, ...]:
    """A payload path split once (gjson's dotted subset, as :func:`semantics.lookup`)."""
    semantics.lookup({}, path)  # raises for syntax the local run does not support
    return tuple(k.replace("\\.", ".") for k in re.split(r"(?<!\\)\.", path))


def walk(document: Any, keys: tuple[str, ...]) -> Any:
    node = document
    for key in keys:
        if isinstance(node, dict):
            if key not in node:
                return _MISSING
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return _MISSING
    return node


def compile_data_filter(f: ir.DataFilter) -> Callable[[Any], bool]:
    """An Argo Events data filter as a function of the event document, with
    :mod:`semantics`'s rules (strings as regular expressions, numbers as floats, a missing
    path fails), its paths split and patterns compiled once."""
    keys = path_keys(f.path)
    negate = f.comparator == "!="
    if f.type == "string":
        patterns = [re.compile(v) for v in f.values]

        def string_filter(document: Any) -> bool:
            value = walk(document, keys)
            if not isinstance(value, str):
                return False
            return any(p.search(value) for p in patterns) != negate

        return string_filter
    if f.type == "bool":
        wanted = [v == "true" for v in f.values]

        def bool_filter(document: Any) -> bool:
            value = walk(document, keys)
            if not isinstance(value, bool):
                return False
            return any(value == w for w in wanted) != negate

        return bool_filter
    targets = [float(v) for v in f.values]
    op = "==" if f.comparator == "=" else f.comparator

    def number_filter(document: Any) -> bool:
        value = walk(document, keys)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if negate:
            return all(float(value) != t for t in targets)
        return any(semantics.compare(float(value), op, t) for t in targets)

    return number_filter


def _hop_topic(pipeline: str, task: str) -> str:
    return f"{pipeline}-hop-{task}"


def groups_of(stream: ir.StreamPlane) -> list[tuple[str, ...]]:
    """The hot path cut at each hop: one fused group of tasks per worker kind."""
    groups: list[list[str]] = [[]]
    for task in stream.hot_tasks:
        if task in stream.hops:
            groups.append([])
        groups[-1].append(task)
    return [tuple(g) for g in groups]


_TRACEPARENT = re.compile(rb"^00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})$")


def _traceparent(headers: Headers) -> str:
    """This hop's W3C traceparent: the event's trace id (or a new one) and a new span id.

    Span and trace ids need to be unique, not secret: ``random.getrandbits`` costs a fraction
    of the ``secrets`` call the workflow plane's publish stage makes once per pod."""
    for key, value in headers:
        if key == "traceparent" and value:
            match = _TRACEPARENT.match(value.strip().lower())
            if match and match[1] != b"0" * 32:
                return f"00-{match[1].decode()}-{getrandbits(64):016x}-{match[2].decode()}"
    return f"00-{getrandbits(128):032x}-{getrandbits(64):016x}-01"


class Plan:
    """One fused group of the hot path, ready to run batches.

    Group 0 reads the trigger's topic and applies its filters, input mapping and payload schema;
    a later group (after a hop) reads the state the previous group wrote to the hop topic.
    """

    def __init__(self, pipeline: ir.Pipeline, *, group: int = 0) -> None:
        stream = pipeline.stream
        if stream is None:
            raise ValueError(f"pipeline {pipeline.name!r} has no stream plane (stream=...)")
        self.pipeline = pipeline
        self.stream = stream
        groups = groups_of(stream)
        if not 0 <= group < len(groups):
            raise ValueError(f"pipeline {pipeline.name!r} has {len(groups)} stream groups")
        self.group = group
        self.tasks = groups[group]
        self.first = group == 0
        self.last = group == len(groups) - 1
        self.input_topic = (
            stream.source_topic if self.first else _hop_topic(pipeline.name, self.tasks[0])
        )
        self.next_topic = None if self.last else _hop_topic(pipeline.name, groups[group + 1][0])
        self.consumer_group = (
            stream.consumer_group if self.first else f"{stream.consumer_group}-{self.tasks[0]}"
        )
        (self.trigger,) = [t for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
        self.steps: list[Step] = []
        for name in self.tasks:
            task = pipeline.task(name)
            stage = pipeline.stage(task.stage)
            kind: type[Step]
            if stage.inference is not None:
                kind = InferenceStep
            elif stage.function == KAFKA_PUBLISH_FUNCTION:
                kind = PublishStep
            else:
                kind = FunctionStep
            self.steps.append(kind(task, stage))
        hot = set(stream.hot_tasks)
        self.frontier = [
            Gate(t, pipeline.stage(t.stage))
            for t in (pipeline.task(n) for n in stream.handoff_tasks)
            if all(d in hot for d in t.depends)
        ]
        self._defaults = {
            p.name: _constant(p.default, p.type) for p in pipeline.inputs if p.default is not None
        }
        self._types = {p.name: p.type for p in pipeline.inputs}
        self._mapping_defaults = {
            m.input: _constant(m.default, self._types.get(m.input))
            for m in self.trigger.inputs
            if m.default is not None
        }
        self._schema = [(path_keys(p), p, t) for p, t in self.trigger.payload_schema]
        self._mappings = [
            (m.input, path_keys(m.path) if m.path is not None else None, m.path)
            for m in self.trigger.inputs
        ]
        paths = [m.path for m in self.trigger.inputs if m.path is not None]
        paths += [f.path for f in self.trigger.data_filters]
        paths += [p for f in self.trigger.expr_filters for p, _ in f.fields]
        self._needs_metadata = any(not p.startswith("body") for p in paths)
        self._filtering = bool(self.trigger.data_filters or self.trigger.expr_filters)
        self._data_filters = [compile_data_filter(f) for f in self.trigger.data_filters]
        self._expr_filters = self.trigger.expr_filters

    @property
    def inference_steps(self) -> list[InferenceStep]:
        return [s for s in self.steps if isinstance(s, InferenceStep)]

    def bind_triton(self, urls: Mapping[str, str], *, timeout_scale: float = 1.0) -> None:
        """Give each inference step its batcher: ``urls`` maps a server name to its gRPC
        address (``host:port``)."""
        from rtflow.stages.stream.triton import TritonBatcher

        batches = dict(self.stream.inference_batch)
        servers = {s.name: s for s in self.pipeline.servers}
        for step in self.inference_steps:
            spec = step.stage.inference
            assert spec is not None
            model = next(m for m in servers[spec.server].models if m.name == spec.model)
            step.batcher = TritonBatcher(
                urls.get(spec.server, spec.url),
                model,
                batch=batches.get(step.task.name, 1),
                in_flight=self.stream.inference_in_flight,
                timeout_seconds=spec.timeout_seconds * timeout_scale,
            )

    def close(self) -> None:
        for step in self.inference_steps:
            if step.batcher is not None:
                step.batcher.close()

    # -- one batch -------------------------------------------------------------------------------

    def _metadata(self, message: Message) -> dict[str, Any]:
        return {
            "topic": message.topic,
            "partition": message.partition,
            "key": (message.key or b"").decode("utf-8", "replace"),
            "timestamp": str(message.timestamp_ms),
            "headers": {k: (v or b"").decode("utf-8", "replace") for k, v in message.headers},
        }

    def _admit(self, event: EventState) -> bool:
        """Decode, filter and map one message; False when the trigger's filter drops it."""
        message = event.message
        try:
            body = json.loads(message.value or b"")
        except ValueError as exc:
            event.fail(NOT_JSON, "", f"the message is not JSON: {exc}")
            return True
        event.traceparent = _traceparent(message.headers)
        if not self.first:
            if not isinstance(body, dict) or "inputs" not in body or "outputs" not in body:
                event.fail(PAYLOAD, "", "a hop record needs 'inputs' and 'outputs'")
                return True
            event.body = body.get("body")
            event.inputs = body["inputs"]
            event.outputs = body["outputs"]
            event.phases = {t: "Succeeded" for t in event.outputs}
            return True
        event.body = body
        document = {**self._metadata(message), "body": body} if self._needs_metadata else None
        if document is None:
            document = {"body": body}
        if self._filtering and not (
            all(f(document) for f in self._data_filters)
            and all(semantics.expr_filter_passes(f, document) for f in self._expr_filters)
        ):
            return False
        for keys, path, param_type in self._schema:
            value = walk(document, keys)
            if value is not _MISSING and not _kind_fits(param_type.kind, value):
                event.fail(PAYLOAD, "", f"{path} is {type(value).__name__}, declared {param_type}")
                return True
        inputs: dict[str, Any] = {}
        for name, mapping_keys, mapped in self._mappings:
            value = walk(document, mapping_keys) if mapping_keys is not None else _MISSING
            if value is not _MISSING:
                inputs[name] = value
            elif name in self._mapping_defaults:
                inputs[name] = self._mapping_defaults[name]
            elif mapped is not None:
                event.fail(PAYLOAD, "", f"the event has no {mapped!r} ({name!r})")
                return True
        for name, param_type in self._types.items():
            if name not in inputs:
                if name not in self._defaults:
                    event.fail(PAYLOAD, "", f"input {name!r} ({param_type}) is missing")
                    return True
                inputs[name] = self._defaults[name]
            value = inputs[name]
            if not _kind_fits(param_type.kind, value):
                event.fail(
                    PAYLOAD, "", f"input {name!r} is {type(value).__name__}, not {param_type}"
                )
                return True
            if param_type.kind == "float" and isinstance(value, int):
                inputs[name] = float(value)
        event.inputs = inputs
        return True

    def execute(self, messages: Sequence[Message]) -> BatchResult:
        """Run the group over a batch; the records to produce, in input order per event.

        Raises DependencyError when a dependency failed for the batch (nothing is half-done:
        the caller produces nothing of this batch and retries it)."""
        result = BatchResult(records=[])
        events: list[EventState] = []
        for message in messages:
            event = EventState(message)
            if self._admit(event):
                events.append(event)
            else:
                result.filtered += 1
        pending: dict[int, list[Record]] = {}
        for step in self.steps:
            started = time.perf_counter()
            if isinstance(step, PublishStep):
                for event in events:
                    if event.dead is None and step.ready(event):
                        record = step.record(event)
                        if record is not None:
                            pending.setdefault(id(event), []).append(record)
            else:
                step.run(events)
            result.stage_seconds[step.task.name] = time.perf_counter() - started
        now_ms = time.time() * 1000.0
        for event in events:
            message = event.message
            # Whether the workflow plane takes over: decided before anything of the event is
            # produced, since deciding can itself fail (a condition Argo could not evaluate).
            handoff = self._hands_off(event)
            if event.dead is not None:
                reason = event.dead[0]
                result.dead_lettered[reason] = result.dead_lettered.get(reason, 0) + 1
                result.records.append(self._dead_letter(event))
                continue
            result.processed += 1
            if message.timestamp_ms > 0:
                result.latencies_ms.append(now_ms - message.timestamp_ms)
            result.records.extend(pending.get(id(event), ()))
            if self.next_topic is not None:
                result.records.append(self._state_record(self.next_topic, event))
                continue
            if self.stream.results_topic is not None:
                result.records.append(self._state_record(self.stream.results_topic, event))
            if handoff:
                result.handed_off += 1
                result.records.append(self._handoff(event))
        return result

    def _hands_off(self, event: EventState) -> bool:
        if event.dead is not None or not self.last or not self.frontier:
            return False
        return any([gate.ready(event) for gate in self.frontier]) and event.dead is None

    # -- what is produced ------------------------------------------------------------------------

    def _source(self, message: Message) -> dict[str, Any]:
        return {"topic": message.topic, "partition": message.partition, "offset": message.offset}

    def _state_record(self, topic: str, event: EventState) -> Record:
        value = {
            "pipeline": self.pipeline.name,
            "body": event.body,
            "inputs": event.inputs,
            "outputs": event.outputs,
            "source": self._source(event.message),
        }
        return Record(
            topic,
            json.dumps(value, separators=(",", ":"), default=str).encode(),
            event.message.key,
            [("traceparent", event.traceparent.encode())],
        )

    def _handoff(self, event: EventState) -> Record:
        """What the workflow plane needs to go on: the pipeline's inputs and the hot path's
        outputs as the texts Argo parameters hold."""
        value = {
            "pipeline": self.pipeline.name,
            "inputs": {k: encode(v) for k, v in event.inputs.items()},
            "outputs": {t: {k: encode(v) for k, v in o.items()} for t, o in event.outputs.items()},
            "source": self._source(event.message),
        }
        assert self.stream.handoff_topic is not None
        return Record(
            self.stream.handoff_topic,
            json.dumps(value, sort_keys=True, separators=(",", ":")).encode(),
            event.message.key,
            [("traceparent", event.traceparent.encode())],
        )

    def _dead_letter(self, event: EventState) -> Record:
        """The original bytes and key, unchanged (a fix is a replay), with why and from where in
        the headers, as Kafka Connect's dead-letter queues do."""
        assert event.dead is not None
        reason, stage, detail = event.dead
        message = event.message
        headers: Headers = [
            ("rtflow-pipeline", self.pipeline.name.encode()),
            ("rtflow-reason", reason.encode()),
            ("rtflow-error", detail[:4000].encode("utf-8", "replace")),
            ("rtflow-source-topic", message.topic.encode()),
            ("rtflow-source-partition", str(message.partition).encode()),
            ("rtflow-source-offset", str(message.offset).encode()),
        ]
        if stage:
            headers.append(("rtflow-stage", stage.encode()))
        headers.extend((k, v) for k, v in message.headers if k == "traceparent")
        return Record(self.stream.dead_letter_topic, message.value or b"", message.key, headers)
