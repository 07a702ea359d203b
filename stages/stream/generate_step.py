"""``rtflow.generate`` on the stream plane: one streamed generation per event.

An inference step sends the batch's tensors to Triton in a few requests; a generation cannot
be batched so (a decoupled model answers one request with many responses, and an LLM backend
batches the requests in flight itself). :class:`GenerateStep` therefore streams one request
per event through :class:`rtflow.gpu.generate.TritonGenerator` at the worker's Triton
address (``Plan.bind_triton``), the batch's generations concurrently, at most
``Stream(generations_in_flight=)`` at once per step (batches in flight share the bound). Each
event's output is the typed generation the workflow plane's ``triton-generate`` stage answers
(``{"result": {"model", "text", "tokens", "ttft_ms", "total_ms"}}``), so the same downstream
stage function reads either; time to first token is observed in the worker's
``rtflow_stream_time_to_first_token_seconds`` histogram.

Failures, told apart as the micro-batcher tells them (:mod:`.triton`):

* Triton unreachable or its stream broken (any gRPC status: UNAVAILABLE...), the model not
  loaded, a generation cut by the step's timeout (an overloaded server):
  :class:`DependencyError`, the batch is retried and nothing is committed past it.
* The model refusing one event's inputs before any token: that event is dead-lettered with
  reason ``inference_rejected``; the model answering an error for it (in its first response
  or mid-stream): reason ``generation_failed``, even when every event of the batch fails so
  (unlike the micro-batcher's "all refused"): two poison prompts in a row would otherwise
  hold their partition forever, and a model that is down answers "not ready", which is the
  server's state (retried).
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rtflow.errors import DefinitionError
from rtflow.gpu.generate import (
    Generation,
    GenerationError,
    GenerationTimeout,
    TritonGenerator,
    collect,
)
from rtflow.gpu.models import TritonModel
from rtflow.stages.stream.batch import INFERENCE_REJECTED, DependencyError, EventState
from rtflow.stages.stream.steps import InferenceStep

__all__ = ["GENERATION_FAILED", "Failed", "GenerateStep", "Generations", "observe_first_tokens"]

GENERATION_FAILED = "generation_failed"  # the model answered an error for this event's prompt

# The workflow stage's words for a refused input (rtflow.stages.builtin.triton_generate).
_REFUSED = ("unexpected", "expected", "missing", "datatype", "shape", "invalid argument")
# Triton's in-stream answers that say the model is not there (yet): the server's state.
_NOT_SERVED = ("unknown model", "is not ready", "is not found", "not loaded")


@dataclass(frozen=True)
class Failed:
    """Why one event's generation has no answer: its dead letter's reason and detail."""

    reason: str
    detail: str


Answer = dict[str, Any] | Failed


class Generations:
    """One decoupled model at one Triton, streamed: ``concurrency`` generations at once, each
    on a :class:`TritonGenerator` of its own (a generator holds one stream)."""

    def __init__(
        self, url: str, model: TritonModel, *, concurrency: int, timeout_seconds: float
    ) -> None:
        self.url = url
        self.model = model
        self.concurrency = max(1, concurrency)
        self.timeout_seconds = timeout_seconds
        self.observe: Callable[[float], None] | None = None
        """Called with each generation's time to first token in seconds (the worker's
        histogram, :func:`observe_first_tokens`)."""
        self._idle: queue.SimpleQueue[TritonGenerator] = queue.SimpleQueue()
        self._made: list[TritonGenerator] = []
        self._calls = cf.ThreadPoolExecutor(
            self.concurrency, thread_name_prefix=f"rtflow-generate-{model.name}"
        )
        self._batches: cf.ThreadPoolExecutor | None = None

    def close(self) -> None:
        if self._batches is not None:
            self._batches.shutdown(wait=True)
        self._calls.shutdown(wait=True)
        for generator in self._made:
            generator.close()

    def submit(self, rows: Sequence[Mapping[str, Any]]) -> cf.Future[list[Answer]]:
        """:meth:`infer` on a thread of its own, for the worker to start its next batch
        meanwhile (``batches_in_flight=2``)."""
        if self._batches is None:
            self._batches = cf.ThreadPoolExecutor(2, thread_name_prefix="rtflow-generations")
        return self._batches.submit(self.infer, list(rows))

    def infer(self, rows: Sequence[Mapping[str, Any]]) -> list[Answer]:
        """Each row's generation (as the workflow stage's JSON) or why it failed;
        DependencyError when Triton or the model, not an event, is at fault."""
        answers: list[Answer] = []
        for outcome in list(self._calls.map(self._one, rows)):
            if isinstance(outcome, BaseException):
                raise DependencyError(f"Triton at {self.url}: {outcome}") from outcome
            if isinstance(outcome, Failed):
                answers.append(outcome)
                continue
            if self.observe is not None:
                self.observe(outcome.ttft_ms / 1000.0)
            answers.append(outcome.as_json())
        return answers

    def _generator(self) -> TritonGenerator:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            made = TritonGenerator(self.url, self.model, timeout_seconds=self.timeout_seconds)
            self._made.append(made)
            return made

    def _one(self, row: Mapping[str, Any]) -> Generation | Failed | BaseException:
        """One generation, classified; an exception returned is the batch's DependencyError."""
        generator = self._generator()
        try:
            return collect(generator.stream_inputs(row), self.model.name)
        except (DefinitionError, TypeError, ValueError) as exc:  # inputs the model lacks
            return Failed(INFERENCE_REJECTED, str(exc))
        except GenerationTimeout as exc:
            return exc  # overloaded, or the budget too long for the timeout: retried
        except GenerationError as exc:
            text = str(exc)
            if exc.status is not None:  # the stream itself broke (UNAVAILABLE...)
                return exc
            if exc.status is None and any(w in text.lower() for w in _NOT_SERVED):
                return exc
            if not exc.tokens and any(w in text.lower() for w in _REFUSED):
                return Failed(INFERENCE_REJECTED, text)
            return Failed(GENERATION_FAILED, text)
        except Exception as exc:  # the channel itself (tritonclient raises its own types)
            return exc
        finally:
            self._idle.put(generator)


class GenerateStep(InferenceStep):
    """An ``rtflow.generate`` task: one streamed generation per event (:class:`Generations`,
    bound by ``Plan.bind_triton`` as ``batcher``)."""

    def answered(self, ready: Sequence[EventState], answers: Sequence[Any]) -> None:
        name = self.task.name
        for event, answer in zip(ready, answers, strict=True):
            if isinstance(answer, Failed):
                event.fail(answer.reason, name, answer.detail)
                continue
            event.outputs[name] = {self.output_name: answer}
            event.phases[name] = "Succeeded"


def observe_first_tokens(steps: Sequence[Any], histogram: Any) -> None:
    """Observe each generate step's times to first token in ``histogram`` (the worker's
    ``first_token``, labelled by stage)."""
    for step in steps:
        if isinstance(step, GenerateStep) and isinstance(step.batcher, Generations):
            step.batcher.observe = histogram.labels(stage=step.task.name).observe
