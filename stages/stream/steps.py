"""The hot path's tasks as callables over an event's state, compiled once from the IR.

A :class:`Gate` decides whether a task runs for an event (``depends`` and ``when``, with
:mod:`rtflow.stages.semantics`' rules, compiled to closures instead of walking the IR per
event); a :class:`Step` also runs it over a batch: a Python stage function
(:class:`FunctionStep`), Triton (:class:`InferenceStep`, the batch in one request) or the
built-in Kafka publish (:class:`PublishStep`, a record of the worker's transaction). The
trigger's data filters and payload paths are compiled here too (:func:`compile_data_filter`).
"""

from __future__ import annotations

import json
import re
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtflow import ir
from rtflow.param_types import ParamType, encode
from rtflow.stages import portable_json, runtime, semantics
from rtflow.stages.event_values import filter_bool, filter_float, filter_text
from rtflow.stages.runtime import BadInput
from rtflow.stages.stream.batch import (
    BAD_INPUT,
    INFERENCE_REJECTED,
    STAGE_FAILED,
    DependencyError,
    EventState,
    Record,
)

_KIND_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "float": (int, float),
    "int": (int,),
    "dict": (dict,),
    "list": (list, tuple),
}


def kind_fits(kind: str, value: Any) -> bool:
    """The Python type check of a value on an edge, without the JSON walk of
    ``ParamType.accepts_value`` (values here come from JSON or were checked when produced).
    A bool is only a bool (Python's bool is an int), and a float takes an int."""
    if value is True or value is False:
        return kind == "bool"
    return isinstance(value, _KIND_TYPES.get(kind, (list, tuple)))


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
        parts = [(k, _json_getter(v)) for k, v in value.fields]
        return lambda e: {k: g(e) for k, g in parts}
    if isinstance(value, ir.JsonList):
        items = [_json_getter(v) for v in value.items]
        return lambda e: [g(e) for g in items]
    if isinstance(value, ir.JsonString):
        return value_getter(value.value)  # the Python str: no JSON text to quote here
    if isinstance(value, ir.TensorData):
        answer, tensor = value_getter(value.answer), value.tensor

        def pick(e: EventState) -> Any:
            try:
                return semantics.tensor_data(answer(e), tensor)
            except (semantics.ConditionError, ValueError) as exc:
                raise BadInput(str(exc)) from None  # the same answer lacks it again

        return pick
    raise ValueError(f"{value!r} cannot be read on the stream plane")


def _json_getter(value: ir.Value) -> Getter:
    """An item of a JSON literal: a constant there is JSON text (``"hi"``, ``2.0``), read once."""
    if isinstance(value, ir.Constant):
        constant = json.loads(value.text)
        return lambda _e: constant
    return value_getter(value)


def _constant_getter(text: str, param_type: ParamType | None) -> Getter:
    constant = constant_value(text, param_type)
    return lambda _e: constant


def constant_value(text: str, param_type: ParamType | None) -> Any:
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
        self.types = types
        # (argument, getter, the kind to check or None): a constant was checked at compile time
        self.getters: list[tuple[str, Getter, str | None]] = []
        for name, value in self.task.arguments:
            if isinstance(value, ir.Constant):
                self.getters.append((name, _constant_getter(value.text, types.get(name)), None))
            else:
                declared = types.get(name)
                kind = declared.kind if declared is not None else None
                self.getters.append((name, value_getter(value), kind))

    def arguments(self, event: EventState) -> dict[str, Any]:
        arguments: dict[str, Any] = {}
        for name, getter, kind in self.getters:
            value = getter(event)
            if kind is not None:
                if not kind_fits(kind, value):
                    raise BadInput(f"input {name!r} is not a {self.types[name]}")
                if kind == "float" and value.__class__ is int:
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
            except DependencyError:
                raise  # a store down (the retrieval built-ins): retry the batch, no dead letter
            except Exception as exc:
                event.fail(STAGE_FAILED, name, _error(exc))
                continue
            if fields is not None:
                event.outputs[name] = dict(zip(fields, result, strict=True))
            elif output is not None:
                if not kind_fits(output.kind, result):
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
        try:
            payload = self.payload(event)
        except BadInput as exc:  # a literal's pick of an inference output it lacks
            event.fail(BAD_INPUT, self.task.name, str(exc))
            return None
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
            value = portable_json.dumps(payload)
        except (TypeError, ValueError) as exc:
            event.fail(BAD_INPUT, self.task.name, f"the payload is not portable JSON: {exc}")
            return None
        event.outputs[self.task.name] = {}
        event.phases[self.task.name] = "Succeeded"
        return Record(self.topic, value, key, [("traceparent", event.traceparent.encode())])


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
        ready, rows = self.requests(events)
        if ready:
            if getattr(self.batcher, "routes_by_source", False):  # a canary (.rollout)
                self.answered(ready, self.batcher.infer_routed(rows, [e.message for e in ready]))
                return
            self.answered(ready, self.batcher.infer(rows))

    def start(self, events: Sequence[EventState]) -> Callable[[], None]:
        """Send the batch's requests and return at once; calling the result waits for the
        answers and records them (a DependencyError is raised then)."""
        ready, rows = self.requests(events)
        if not ready:
            return lambda: None
        if getattr(self.batcher, "routes_by_source", False):  # a canary (.rollout)
            answers = self.batcher.submit_routed(rows, [e.message for e in ready])
        else:
            answers = self.batcher.submit(rows)
        return lambda: self.answered(ready, answers.result())

    def requests(
        self, events: Sequence[EventState]
    ) -> tuple[list[EventState], list[Mapping[str, Any]]]:
        """The events this step runs for, and each one's tensors."""
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
        return ready, rows

    def answered(self, ready: Sequence[EventState], answers: Sequence[Any]) -> None:
        name = self.task.name
        for event, answer in zip(ready, answers, strict=True):
            if isinstance(answer, dict):
                event.outputs[name] = {self.output_name: answer}
                event.phases[name] = "Succeeded"
            else:
                event.fail(INFERENCE_REJECTED, name, answer.reason)


MISSING = object()


def path_keys(path: str) -> tuple[str, ...]:
    """A payload path split once (gjson's dotted subset, as :func:`semantics.lookup`)."""
    semantics.lookup({}, path)  # raises for syntax the local run does not support
    return tuple(k.replace("\\.", ".") for k in re.split(r"(?<!\\)\.", path))


def walk(document: Any, keys: tuple[str, ...]) -> Any:
    node = document
    for key in keys:
        if isinstance(node, dict):
            if key not in node:
                return MISSING
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return MISSING
    return node


def compile_data_filter(f: ir.DataFilter) -> Callable[[Any], bool]:
    """An Argo Events data filter as a function of the event document, with
    :mod:`semantics`'s rules (strings as regular expressions, gjson's coercions of a value of
    another type: :mod:`rtflow.stages.event_values`; a missing path fails), its paths split and
    patterns compiled once."""
    keys = path_keys(f.path)
    negate = f.comparator == "!="
    if f.type == "string":
        patterns = [re.compile(v) for v in f.values]

        def string_filter(document: Any) -> bool:
            value = walk(document, keys)
            if value is MISSING:
                return False
            text = value if value.__class__ is str else filter_text(value)
            return any(p.search(text) for p in patterns) != negate

        return string_filter
    if f.type == "bool":
        wanted = [v == "true" for v in f.values]

        def bool_filter(document: Any) -> bool:
            value = walk(document, keys)
            if value is MISSING:
                return False
            flag = filter_bool(value)
            return any(flag == w for w in wanted) != negate

        return bool_filter
    targets = [float(v) for v in f.values]
    op = "==" if f.comparator == "=" else f.comparator

    def number_filter(document: Any) -> bool:
        value = walk(document, keys)
        if value is MISSING:
            return False
        cls = value.__class__
        number = float(value) if cls is float or cls is int else filter_float(value)
        if negate:
            return all(number != t for t in targets)
        return any(semantics.compare(number, op, t) for t in targets)

    return number_filter
