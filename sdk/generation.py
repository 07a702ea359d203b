"""``rtflow.generate``: a streamed generation from an LLM served by Triton.

``rtflow.generate(server, model, prompt, max_tokens=...)`` records one step that sends the
prompt to a decoupled model (:mod:`rtflow.gpu.llm`'s vLLM model, or any model declared
``decoupled=True`` that takes ``text_input``) and reads its tokens as they arrive. Its value
stands for the typed answer (:class:`GenerationResult`): ``text``, ``tokens``, ``ttft_ms``
(time to first token) and ``total_ms``.

**How it compiles.** A container step running the built-in generate stage
(:mod:`rtflow.stages.builtin.triton_generate`) in the ``triton-client`` image, which streams
over Triton's gRPC ``ModelStreamInfer``, as ``rtflow.infer(..., via="grpc")`` runs its client
stage; not an Argo ``http`` step, because

* Triton's one-answer ``/generate`` endpoint refuses a model that streams ("generate expects
  model to produce exactly 1 response"), and ``/infer`` refuses decoupled models outright;
* ``/generate_stream`` answers Server-Sent Events (``data: {...}`` per token): Argo's http
  template keeps the body as one text, so the step's result would be an event stream no
  expression can read as the answer, and nothing would know when the first token came;
* time to first token is only measurable by a client that reads the stream as it arrives.

The price is a pod per call on the workflow plane (seconds of scheduling next to a generation
that itself takes seconds). The tokens are inputs to the model by the names the model
declares (:func:`rtflow.gpu.generate.generation_inputs`), so the compile-time checks of
``rtflow.infer`` (the server serves the model, the Deployment loads it, each tensor's type)
apply unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from rtflow.errors import DefinitionError, RtflowError
from rtflow.recording import InferenceDef, current_recorder

__all__ = ["GenerationResult", "generate"]


class GenerationResult(dict[str, Any]):
    """What ``rtflow.generate`` stands for, for type checkers: the generation as a dict
    (``text``: str, ``tokens``: list[str], ``ttft_ms`` and ``total_ms``: float, ``model``).
    A stage taking ``dict[str, Any]`` accepts it. At record time the value is the step itself;
    nothing constructs this class."""


def generate(
    server: Any,
    model: Any,
    prompt: object,
    *,
    max_tokens: int = 256,
    sampling: Mapping[str, object] | None = None,
    name: str | None = None,
    timeout: int | str | None = "120s",
    retry: Any = None,
) -> GenerationResult:
    """Generate from ``model`` on the Triton ``server``, streaming: ``prompt`` (a ``str``
    pipeline value or literal) in, the typed generation out.

    ``max_tokens`` is the token budget (the model's ``max_tokens`` / ``request_output_len``
    input, or inside vLLM's ``sampling_parameters``); ``sampling`` more vLLM sampling
    parameters (``temperature``, ``top_p``...). ``timeout`` bounds the whole generation (the
    request is cancelled in Triton when it passes); ``retry`` as for ``rtflow.infer``.
    """
    from rtflow.gpu.generate import generation_inputs
    from rtflow.gpu.models import TritonModel

    recorder = current_recorder()
    if recorder is None:
        raise RtflowError("rtflow.generate() can only be used inside a pipeline function")
    served = {m.name: m for m in getattr(server, "models", ())}
    declared = served.get(model) if isinstance(model, str) else model
    if not isinstance(declared, TritonModel):
        raise DefinitionError(
            f"server {getattr(server, 'name', server)!r} does not serve model {model!r}",
            fix=f"generate with one of {', '.join(served) or 'its models'}",
            field="model",
            stage=name,
        )
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise DefinitionError(
            f"max_tokens {max_tokens!r} is not a positive whole number",
            fix="give the token budget, e.g. max_tokens=256",
            field="max_tokens",
            stage=name,
        )
    step = name or f"generate-{declared.name}"
    try:
        inputs = generation_inputs(declared, prompt, max_tokens=max_tokens, sampling=sampling)
    except DefinitionError as error:
        raise error.located(stage=step) from None
    definition = InferenceDef(
        server=server,
        model=declared,
        name=step,
        shapes={},
        timeout=timeout,
        retry=retry,
        via="generate",
    )
    # Typed as what it stands for (the generation's JSON), so mypy checks the stage it feeds.
    return cast(GenerationResult, recorder.inference(definition, inputs))
