"""Token streams from a decoupled (LLM) model on Triton: gRPC streaming and ``generate_stream``.

A decoupled model answers one request with any number of responses: one per token (or group
of tokens), then a final, possibly empty, response. Two of Triton's endpoints carry them:

* **gRPC** ``ModelStreamInfer`` (tritonclient's ``start_stream`` / ``async_stream_infer``):
  binary tensors, the path the built-in generate stage and the stream plane use;
* **HTTP** ``POST /v2/models/<model>/generate_stream``: a JSON object of the inputs in,
  Server-Sent Events out (``data: {...}`` per response). Its sibling ``/generate`` refuses a
  model that answers more than once ("generate expects model to produce exactly 1
  response"), so it cannot serve a streaming LLM.

Both yield the tokens as they arrive (:meth:`TritonGenerator.stream`, :func:`stream_http`), so
a stage can act on the first ones before the last is made, and both collect a typed
:class:`Generation` (text, tokens, time to first token, total time). A model error, in the
first response or mid-stream, is an :class:`GenerationError` (holding the tokens that came
before it); a deadline passed is a :class:`GenerationTimeout` and cancels the request, as does
leaving the iteration early (``break``): Triton is told over gRPC, and over HTTP the
connection is closed.

Which inputs a call sends comes from the model's declaration (:func:`generation_inputs`): the
prompt goes to ``text_input``; the token budget to ``max_tokens`` or ``request_output_len``
(TensorRT-LLM), or inside the vLLM backend's ``sampling_parameters`` JSON; ``stream`` /
``streaming`` are set. Needs the ``triton`` extra (tritonclient, numpy) for gRPC; HTTP uses
only the standard library.
"""

from __future__ import annotations

import http.client
import json
import queue
import threading
import time
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final

from rtflow.errors import DefinitionError
from rtflow.gpu.kserve import KSERVE_DATATYPES, InferenceError
from rtflow.gpu.models import TritonModel

__all__ = [
    "BUDGET_INPUTS",
    "PROMPT_INPUT",
    "Generation",
    "GenerationError",
    "GenerationTimeout",
    "TritonGenerator",
    "collect",
    "generate_stream_path",
    "generation_inputs",
    "stream_http",
    "text_output",
]

PROMPT_INPUT: Final = "text_input"
BUDGET_INPUTS: Final = ("max_tokens", "request_output_len")
STREAM_INPUTS: Final = ("stream", "streaming")
SAMPLING_INPUT: Final = "sampling_parameters"


class GenerationError(InferenceError):
    """The model answered an error (``tokens``: what it streamed before)."""

    def __init__(
        self, message: str, tokens: tuple[str, ...] = (), status: str | None = None
    ) -> None:
        super().__init__(message)
        self.tokens = tokens
        self.status = status
        """The gRPC status of a transport or server failure (``UNAVAILABLE``...); None when
        the model itself answered the error in its stream."""


class GenerationTimeout(GenerationError, TimeoutError):
    """The generation did not finish within its deadline; the request was cancelled."""


@dataclass(frozen=True)
class Generation:
    """A finished generation: the tokens in arrival order and their text joined."""

    model: str
    tokens: tuple[str, ...]
    ttft_ms: float
    """From sending the request to the first token (the whole time when none came)."""
    total_ms: float
    """From sending the request to the final response."""
    text: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "text", "".join(self.tokens))

    def as_json(self) -> dict[str, Any]:
        """What the built-in generate stage answers (a pipeline step's JSON output)."""
        return {
            "model": self.model,
            "text": self.text,
            "tokens": list(self.tokens),
            "ttft_ms": round(self.ttft_ms, 3),
            "total_ms": round(self.total_ms, 3),
        }


def text_output(model: TritonModel) -> str:
    """The output a generation's text comes in: ``text_output``, or the model's one
    ``TYPE_STRING`` output."""
    texts = [t.name for t in model.outputs if t.data_type == "TYPE_STRING"]
    if "text_output" in texts:
        return "text_output"
    if len(texts) == 1:
        return texts[0]
    raise DefinitionError(
        f"model {model.name!r} has no text output to generate into",
        fix="declare one TYPE_STRING output (text_output), or call it with rtflow.infer",
        field="model",
    )


def generation_inputs(
    model: TritonModel,
    prompt: object,
    *,
    max_tokens: object,
    sampling: Mapping[str, object] | None = None,
) -> dict[str, object]:
    """The model's inputs for one generation, each by the name the model declares (values
    as given: ``prompt`` may stand for a pipeline value at record time)."""
    declared = {t.name: t for t in model.inputs}
    if not model.decoupled:
        raise DefinitionError(
            f"model {model.name!r} is not decoupled, so it cannot stream tokens",
            fix="declare it with rtflow.gpu.llm (vllm_model, ...) or decoupled=True; "
            "call a one-answer model with rtflow.infer",
            field="model",
        )
    if PROMPT_INPUT not in declared or declared[PROMPT_INPUT].data_type != "TYPE_STRING":
        raise DefinitionError(
            f"model {model.name!r} has no TYPE_STRING input {PROMPT_INPUT!r} for the prompt",
            fix="generate with a model that takes text (vLLM, or rtflow.gpu.llm."
            "tensorrtllm_ensemble around a TensorRT-LLM model)",
            field="model",
        )
    text_output(model)
    inputs: dict[str, object] = {PROMPT_INPUT: prompt}
    extra = dict(sampling or {})
    budget = next((n for n in BUDGET_INPUTS if n in declared), None)
    if budget is not None:
        inputs[budget] = max_tokens
    else:
        extra["max_tokens"] = max_tokens
    for name in STREAM_INPUTS:
        if name in declared:
            inputs[name] = True
    if SAMPLING_INPUT in declared:
        if not isinstance(extra.get("max_tokens", 0), int):
            raise DefinitionError(
                f"model {model.name!r} takes max_tokens inside {SAMPLING_INPUT!r}, so it "
                "must be a number when the pipeline is compiled",
                fix="give max_tokens as an int",
                field="max_tokens",
            )
        try:
            inputs[SAMPLING_INPUT] = json.dumps(extra, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise DefinitionError(
                f"model {model.name!r}: sampling {extra!r} is not JSON ({exc})",
                fix="give numbers, strings, booleans or lists of them",
                field="sampling",
            ) from None
    elif budget is None or sampling:
        raise DefinitionError(
            f"model {model.name!r} takes no {SAMPLING_INPUT!r} input"
            + ("" if budget is not None else f" and none of {', '.join(BUDGET_INPUTS)}"),
            fix=f"declare {SAMPLING_INPUT!r} (TYPE_STRING, JSON), or drop sampling",
            field="sampling" if sampling else "max_tokens",
        )
    missing = [t.name for t in model.inputs if t.name not in inputs and not t.optional]
    if missing:
        raise DefinitionError(
            f"model {model.name!r} needs input {missing[0]!r}, which a generation does not fill",
            fix="make it optional in the model, or call the model with rtflow.infer",
            field="model",
        )
    return inputs


def collect(tokens: Iterator[str], model: str) -> Generation:
    """Drain a token stream into a :class:`Generation`, timing it from now."""
    started = time.perf_counter()
    first: float | None = None
    seen: list[str] = []
    for token in tokens:
        if first is None and token:
            first = time.perf_counter()
        seen.append(token)
    done = time.perf_counter()
    return Generation(
        model=model,
        tokens=tuple(seen),
        ttft_ms=((first or done) - started) * 1000.0,
        total_ms=(done - started) * 1000.0,
    )


# -- gRPC -----------------------------------------------------------------------------------------


class TritonGenerator:
    """Stream tokens from one decoupled model over gRPC; one stream at a time per generator
    (tritonclient's client holds one stream), so use one per concurrent caller."""

    def __init__(
        self,
        url: str,
        model: TritonModel | str,
        *,
        timeout_seconds: float | None = None,
    ) -> None:
        """``model``: its declaration, or its name (then its configuration is read from the
        server, as the built-in generate stage does: the step carries no declaration)."""
        import numpy as np
        import tritonclient.grpc as grpcclient  # type: ignore[import-untyped, unused-ignore]

        self.timeout_seconds = timeout_seconds
        self._np: Any = np
        self._grpc: Any = grpcclient
        self._client: Any = grpcclient.InferenceServerClient(url=url)
        self._lock = threading.Lock()
        if isinstance(model, TritonModel):
            self.model: TritonModel | None = model
            self.name = model.name
            self._batched = model.batched
            self._output = text_output(model)
            self._types = {t.name: t.data_type for t in model.inputs}
            return
        self.model = None
        self.name = model
        try:
            config = self._client.get_model_config(model, as_json=True)["config"]
        except Exception as exc:
            self._client.close()
            raise GenerationError(f"model {model!r}: Triton answered: {exc}") from None
        self._batched = int(config.get("max_batch_size", 0)) > 0
        self._types = {t["name"]: str(t["data_type"]) for t in config.get("input", [])}
        texts = [o["name"] for o in config.get("output", []) if o["data_type"] == "TYPE_STRING"]
        if not config.get("model_transaction_policy", {}).get("decoupled"):
            self._client.close()
            raise GenerationError(f"model {model!r} is not decoupled: it cannot stream tokens")
        if "text_output" not in texts and len(texts) != 1:
            self._client.close()
            raise GenerationError(f"model {model!r} has no text output to generate into")
        self._output = "text_output" if "text_output" in texts else texts[0]

    def _tensor(self, name: str, value: object) -> Any:
        from rtflow.gpu.client import NUMPY_DTYPES

        kind = self._types[name]
        items = value if isinstance(value, (list, tuple)) else [value]
        if kind == "TYPE_STRING":
            items = [v.encode("utf-8") if isinstance(v, str) else v for v in items]
        array = self._np.array(items, dtype=NUMPY_DTYPES[kind])
        if self._batched:
            array = array.reshape(1, -1)
        tensor = self._grpc.InferInput(name, list(array.shape), KSERVE_DATATYPES[kind])
        tensor.set_data_from_numpy(array)
        return tensor

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int,
        sampling: Mapping[str, object] | None = None,
        timeout_seconds: float | None = None,
    ) -> Iterator[str]:
        """The tokens as they arrive. Leaving the loop early cancels the request."""
        if self.model is None:
            raise TypeError("stream() needs the model's declaration; use stream_inputs()")
        inputs = generation_inputs(self.model, prompt, max_tokens=max_tokens, sampling=sampling)
        return self.stream_inputs(inputs, timeout_seconds=timeout_seconds)

    def stream_inputs(
        self, inputs: Mapping[str, object], *, timeout_seconds: float | None = None
    ) -> Iterator[str]:
        """The tokens for ``inputs`` (input name -> value or flat list) as they arrive."""
        unknown = sorted(set(inputs) - set(self._types))
        if unknown:
            raise DefinitionError(
                f"model {self.name!r} has no input {unknown[0]!r}",
                fix=f"give only its inputs: {', '.join(self._types)}",
                field=f"inputs.{unknown[0]}",
            )
        tensors = [self._tensor(name, value) for name, value in inputs.items()]
        limit = timeout_seconds if timeout_seconds is not None else self.timeout_seconds
        return self._responses(tensors, limit)

    def _responses(self, tensors: list[Any], limit: float | None) -> Iterator[str]:
        answers: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        deadline = None if limit is None else time.monotonic() + limit
        tokens: list[str] = []
        name = self.name
        with self._lock:
            self._client.start_stream(callback=lambda result, error: answers.put((result, error)))
            finished = False
            try:
                try:
                    self._client.async_stream_infer(
                        name,
                        tensors,
                        request_id=uuid.uuid4().hex,
                        enable_empty_final_response=True,
                    )
                except Exception as exc:  # the stream broke before the request went out
                    raise self._broken(name, answers, exc) from None
                while True:
                    wait = None if deadline is None else deadline - time.monotonic()
                    if wait is not None and wait <= 0:
                        raise GenerationTimeout(
                            f"model {name!r}: no final response within {limit} s", tuple(tokens)
                        )
                    try:
                        result, error = answers.get(timeout=wait)
                    except queue.Empty:
                        continue
                    if error is not None:
                        raise GenerationError(
                            f"model {name!r}: Triton answered: {error}",
                            tuple(tokens),
                            _grpc_status(error),
                        )
                    response = result.get_response()
                    final = response.parameters.get("triton_final_response")
                    array = result.as_numpy(self._output)
                    if array is not None and array.size:
                        token = "".join(_text(item) for item in array.reshape(-1).tolist())
                        tokens.append(token)
                        yield token
                    if final is not None and final.bool_param:
                        finished = True
                        return
            finally:
                # a stream left early (break, error, timeout) cancels the request in Triton
                self._client.stop_stream(cancel_requests=not finished)

    def _broken(
        self, name: str, answers: queue.SimpleQueue[tuple[Any, Any]], exc: Exception
    ) -> GenerationError:
        """The stream's own failure (its callback has it, e.g. UNAVAILABLE), rather than
        tritonclient's "the stream is no longer in valid state"; a transport failure either
        way, never the model's answer."""
        try:
            _, error = answers.get(timeout=1.0)
        except queue.Empty:
            error = None
        cause = error if error is not None else exc
        status = _grpc_status(cause) or "UNAVAILABLE"
        return GenerationError(f"model {name!r}: Triton answered: {cause}", (), status)

    def generate(
        self,
        prompt: str,
        *,
        max_tokens: int,
        sampling: Mapping[str, object] | None = None,
        timeout_seconds: float | None = None,
    ) -> Generation:
        """The whole generation, timed (time to first token, total)."""
        tokens = self.stream(
            prompt, max_tokens=max_tokens, sampling=sampling, timeout_seconds=timeout_seconds
        )
        return collect(tokens, self.name)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonGenerator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _grpc_status(error: object) -> str | None:
    """``UNAVAILABLE`` of tritonclient's ``StatusCode.UNAVAILABLE``; None for an error the
    model answered in its stream (tritonclient gives those no status)."""
    status = getattr(error, "status", None)
    if callable(status):
        status = status()
    return str(status).rsplit(".", 1)[-1] if status else None


def _text(item: object) -> str:
    if isinstance(item, bytes):
        try:
            return item.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GenerationError(f"a token is not UTF-8 text ({exc})") from None
    return str(item)


# -- HTTP generate_stream (Server-Sent Events) ----------------------------------------------------


def generate_stream_path(model: str) -> str:
    return f"/v2/models/{urllib.parse.quote(model, safe='')}/generate_stream"


def stream_http(
    base_url: str,
    model: TritonModel,
    inputs: Mapping[str, object],
    *,
    timeout_seconds: float = 60.0,
) -> Iterator[str]:
    """POST ``inputs`` (input name -> value) to ``generate_stream`` and yield each event's
    text as it arrives. Closing the iterator early closes the connection."""
    output = text_output(model)
    parts = urllib.parse.urlsplit(base_url if "://" in base_url else f"http://{base_url}")
    connection_type = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    body = json.dumps(dict(inputs)).encode("utf-8")
    deadline = time.monotonic() + timeout_seconds
    connection = connection_type(parts.netloc, timeout=timeout_seconds)
    tokens: list[str] = []
    try:
        connection.request(
            "POST",
            parts.path.rstrip("/") + generate_stream_path(model.name),
            body=body,
            headers={"Content-Type": "application/json", "Accept": "text/event-stream"},
        )
        response = connection.getresponse()
        if response.status != 200:
            text = response.read().decode("utf-8", "replace")
            raise GenerationError(
                f"model {model.name!r}: Triton answered {response.status}: {text}"
            )
        while True:
            if time.monotonic() > deadline:
                raise GenerationTimeout(
                    f"model {model.name!r}: no final event within {timeout_seconds} s",
                    tuple(tokens),
                )
            try:
                line = response.readline()
            except TimeoutError:
                raise GenerationTimeout(
                    f"model {model.name!r}: no event within {timeout_seconds} s", tuple(tokens)
                ) from None
            if not line:
                return  # the server ended the stream: the final response was sent
            if not line.startswith(b"data:"):
                continue  # the blank line between events
            event = json.loads(line[5:])
            if "error" in event:
                raise GenerationError(
                    f"model {model.name!r}: Triton answered: {event['error']}", tuple(tokens)
                )
            value = event.get(output)
            if value is None:
                continue
            items = value if isinstance(value, list) else [value]
            token = "".join(str(v) for v in items)
            if token:
                tokens.append(token)
                yield token
    finally:
        connection.close()
