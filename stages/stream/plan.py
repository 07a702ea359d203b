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
from collections.abc import Generator, Mapping, Sequence
from random import getrandbits
from typing import Any

from rtflow import ir
from rtflow.param_types import decode, encode
from rtflow.stages import portable_json, semantics
from rtflow.stages.event_values import converter
from rtflow.stages.inference import GENERATE_FUNCTION
from rtflow.stages.stream.batch import (
    NOT_JSON,
    PAYLOAD,
    BatchResult,
    DependencyError,
    EventState,
    Headers,
    Message,
    Record,
)
from rtflow.stages.stream.drift import DriftStep
from rtflow.stages.stream.generate_step import GenerateStep, Generations
from rtflow.stages.stream.steps import (
    MISSING,
    FunctionStep,
    Gate,
    InferenceStep,
    PublishStep,
    Step,
    compile_data_filter,
    path_keys,
    walk,
)
from rtflow.stream_layout import DRIFT_FUNCTIONS, KAFKA_PUBLISH_FUNCTION, groups_of, hop_topic

__all__ = [
    "BatchResult",
    "DependencyError",
    "Message",
    "Plan",
    "PublishStep",
    "Record",
    "StartedBatch",
    "groups_of",
    "hop_topic",
]


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
            stream.source_topic if self.first else hop_topic(pipeline.name, self.tasks[0])
        )
        self.next_topic = None if self.last else hop_topic(pipeline.name, groups[group + 1][0])
        self.consumer_group = (
            stream.consumer_group if self.first else f"{stream.consumer_group}-{self.tasks[0]}"
        )
        (self.trigger,) = [t for t in pipeline.triggers if isinstance(t.source, ir.KafkaSource)]
        self.steps: list[Step] = []
        for name in self.tasks:
            task = pipeline.task(name)
            stage = pipeline.stage(task.stage)
            kind: type[Step]
            if stage.function == GENERATE_FUNCTION:
                kind = GenerateStep  # one streamed generation per event, not a batch
            elif stage.inference is not None:
                kind = InferenceStep
            elif stage.function == KAFKA_PUBLISH_FUNCTION:
                kind = PublishStep
            elif stage.function in DRIFT_FUNCTIONS:
                kind = DriftStep  # a window of the worker's, observed once the batch is done
            else:
                kind = FunctionStep
            self.steps.append(kind(task, stage))
        hot = set(stream.hot_tasks)
        self.frontier = [
            Gate(t, pipeline.stage(t.stage))
            for t in (pipeline.task(n) for n in stream.handoff_tasks)
            if all(d in hot for d in t.depends)
        ]
        # An event's value reaches an input as on the workflow plane (rtflow.stages.event_values:
        # Argo Events' text, decoded by the input's type): one converter per input, made here.
        self._types = {p.name: p.type for p in pipeline.inputs}
        self._defaults = {
            p.name: decode(p.default, p.type) for p in pipeline.inputs if p.default is not None
        }
        self._mapping_defaults = {
            m.input: decode(m.default, self._types[m.input])
            for m in self.trigger.inputs
            if m.default is not None and m.input in self._types
        }
        self._schema = [(path_keys(p), p, t, converter(t)) for p, t in self.trigger.payload_schema]
        self._mappings = [
            (
                m.input,
                path_keys(m.path) if m.path is not None else None,
                m.path,
                converter(self._types[m.input]) if m.input in self._types else None,
            )
            for m in self.trigger.inputs
        ]
        mapped = {m.input for m in self.trigger.inputs}
        self._unmapped = [(p.name, p.type) for p in pipeline.inputs if p.name not in mapped]
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
            if isinstance(step, GenerateStep):
                step.batcher = Generations(
                    urls.get(spec.server, spec.url),
                    model,
                    concurrency=self.stream.generations_in_flight,
                    timeout_seconds=spec.timeout_seconds * timeout_scale,
                )
                continue
            if model.canary is not None:  # each event to the stable or the candidate version
                from rtflow.stages.stream.rollout import VersionRouter

                step.batcher = VersionRouter(
                    urls.get(spec.server, spec.url),
                    model,
                    stage=step.task.name,
                    batch=batches.get(step.task.name, 1),
                    in_flight=self.stream.inference_in_flight,
                    timeout_seconds=spec.timeout_seconds * timeout_scale,
                )
                continue
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
        body, problem = portable_json.parse(message.value or b"")
        if problem is not None:
            event.fail(NOT_JSON, "", problem)
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
        for keys, path, param_type, convert in self._schema:
            value = walk(document, keys)
            if value is not MISSING:
                try:
                    convert(value)
                except ValueError:
                    event.fail(
                        PAYLOAD, "", f"{path} is {type(value).__name__}, declared {param_type}"
                    )
                    return True
        inputs: dict[str, Any] = {}
        for name, mapping_keys, mapped, to_input in self._mappings:
            value = walk(document, mapping_keys) if mapping_keys is not None else MISSING
            if value is not MISSING:
                if to_input is None:
                    continue  # not an input of the pipeline (refused at compile time)
                try:
                    inputs[name] = to_input(value)
                except ValueError as exc:
                    event.fail(PAYLOAD, "", f"input {name!r}: {exc}")
                    return True
            elif name in self._mapping_defaults:
                inputs[name] = self._mapping_defaults[name]
            elif mapped is not None:
                event.fail(PAYLOAD, "", f"the event has no {mapped!r} (input {name!r})")
                return True
        for name, param_type in self._unmapped:
            if name not in self._defaults:
                event.fail(PAYLOAD, "", f"input {name!r} ({param_type}) is missing")
                return True
            inputs[name] = self._defaults[name]
        event.inputs = inputs
        return True

    def execute(self, messages: Sequence[Message]) -> BatchResult:
        """Run the group over a batch; the records to produce, in input order per event.

        Raises DependencyError when a dependency failed for the batch (nothing is half-done:
        the caller produces nothing of this batch and retries it)."""
        return StartedBatch(self._run(messages, overlap=False)).finish()

    def start(self, messages: Sequence[Message]) -> StartedBatch:
        """Run the batch up to its first inference and return while Triton answers, for the
        worker to start the next batch meanwhile; :meth:`StartedBatch.finish` does the rest.
        A DependencyError comes from either call."""
        return StartedBatch(self._run(messages, overlap=True))

    def _run(
        self, messages: Sequence[Message], *, overlap: bool
    ) -> Generator[None, None, BatchResult]:
        """The batch, step by step; with ``overlap`` it pauses (yields) after sending each
        inference step's requests, and waits for their answers when resumed."""
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
            elif overlap and isinstance(step, InferenceStep):
                answered = step.start(events)
                sent = time.perf_counter()
                yield
                resumed = time.perf_counter()
                answered()
                # this batch's own time in the step: sending, then waiting once resumed
                started += resumed - sent
            else:
                step.run(events)
            result.stage_seconds[step.task.name] = time.perf_counter() - started
        # drift windows count the events still alive once every step ran (.drift); their
        # records join the batch's transaction after the events' own
        drifted = [r for s in self.steps if isinstance(s, DriftStep) for r in s.observe(events)]
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
        result.records.extend(drifted)
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


class StartedBatch:
    """A batch the worker has started: run up to its first inference request (or to its end)."""

    def __init__(self, run: Generator[None, None, BatchResult]) -> None:
        self._run = run
        self._result: BatchResult | None = None
        self._advance()

    def _advance(self) -> None:
        try:
            next(self._run)
        except StopIteration as stop:
            self._result = stop.value

    def finish(self) -> BatchResult:
        """Wait for its requests' answers and run the rest of its steps."""
        while self._result is None:
            self._advance()
        return self._result

    def discard(self) -> None:
        """Drop it unfinished (a batch before it failed, its partitions were revoked): nothing
        of it is produced; the answers of a request still out are ignored."""
        self._run.close()
