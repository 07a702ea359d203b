"""The built-in generate stage: one generation streamed from a decoupled (LLM) model.

``rtflow.generate(...)`` compiles to a container step running this function in the
``triton-client`` image (as ``rtflow.infer(..., via="grpc")`` runs ``triton_infer``): the
request goes over Triton's gRPC ``ModelStreamInfer``, the tokens are read as they arrive, and
the answer is the typed generation (:class:`rtflow.gpu.generate.Generation`) as JSON: ``text``,
``tokens``, ``ttft_ms`` (time to the first token), ``total_ms``. The step reads the model's
configuration from the server, so it needs no copy of the declaration.

A model error (in the first response or mid-stream) fails the step, as a 5xx fails the http
step, and its retry strategy applies; an input the model refuses is a bad input (dead-lettered
at once: the same request would be refused again); the deadline cancels the request in Triton.
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.stages.builtin import image as builtin_image
from rtflow.stages.runtime import BadInput

_REFUSED = ("unexpected", "expected", "missing", "datatype", "shape", "invalid argument")


@rtflow.stage(
    name="triton-generate", image=builtin_image("triton-client"), cpu="500m", memory="1Gi"
)
def triton_generate(
    url: str, model: str, tensors: dict[str, Any], timeout_seconds: float = 60.0
) -> dict[str, Any]:
    """Stream a generation of ``model`` at the gRPC ``url`` from ``tensors`` (input name ->
    flat list: ``text_input``, ``max_tokens``...); answer its text, tokens and timings."""
    from rtflow.errors import DefinitionError
    from rtflow.gpu.generate import GenerationError, GenerationTimeout, TritonGenerator, collect

    generator = TritonGenerator(url, model, timeout_seconds=timeout_seconds)
    try:
        tokens = generator.stream_inputs(tensors)
        return collect(tokens, model).as_json()
    except DefinitionError as exc:  # an input the model does not have
        raise BadInput(str(exc)) from None
    except GenerationTimeout:
        raise
    except GenerationError as exc:
        if not exc.tokens and any(word in str(exc).lower() for word in _REFUSED):
            raise BadInput(str(exc)) from None
        raise
    finally:
        generator.close()
