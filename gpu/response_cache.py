"""Triton's response cache: which models may use it, and the server flag that turns it on.

A model declared ``triton_model(..., response_cache=True)`` gets ``response_cache { enable:
true }`` in its ``config.pbtxt``; a server that loads at least one such model starts with
``--cache-config=local,size=<bytes>`` (Triton's built-in in-memory ``local`` cache). Both are
needed: the model's setting alone caches nothing, the server's alone caches no model.

Triton keys an entry on the model, its version and every input tensor (name, shape, datatype,
bytes), and answers a hit without running the model. Its documented limitations (the user
guide's "Triton Response Cache", *Known Limitations*) decide what compile refuses:

* decoupled models are not supported (a request may have any number of responses), so a
  streaming LLM (:mod:`rtflow.gpu.llm`'s vLLM and TensorRT-LLM models, both decoupled) cannot
  enable it;
* models with a sequence batcher are not supported (their answer depends on the sequence's
  state, not only the request); rtflow declares no sequence batching, so none can ask;
* only tensors in CPU memory are hashed: a GPU-memory input is simply a miss at run time, not a
  definition error.

The size is counted against the Triton pod's memory (the local cache is host memory), so the
default stays small; a model that is cheap to run may be slower with a cache than without (the
guide's own caveat), which is why caching is off unless declared.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from rtflow.errors import DefinitionError

if TYPE_CHECKING:
    from rtflow.gpu.models import TritonModel

__all__ = [
    "CACHE_BYTES",
    "CLIENT_CACHE_LIMIT",
    "cache_args",
    "check_client_cache",
    "check_response_cache",
]

CACHE_BYTES: Final = 64 * 1024 * 1024
"""The server's local cache: 64 MiB of host memory, shared by every cached model."""


CLIENT_CACHE_LIMIT: Final = 1_000_000
"""The most answers a stream worker keeps per model (each is a few hundred bytes of Python)."""


def check_response_cache(name: str, response_cache: object, *, decoupled: bool) -> bool:
    """The declared ``response_cache`` flag, refused where Triton refuses it."""
    if not isinstance(response_cache, bool):
        raise DefinitionError(
            f"model {name!r}: response_cache {response_cache!r} is not a bool",
            fix="give True to let Triton answer repeated requests from its cache, else False",
            field="response_cache",
        )
    if response_cache and decoupled:
        raise DefinitionError(
            f"model {name!r}: Triton's response cache does not support decoupled models",
            fix="drop response_cache=True (a streaming model cannot be answered from a cache)",
            field="response_cache",
        )
    return response_cache


def cache_args(models: Iterable[TritonModel]) -> list[str]:
    """``tritonserver`` flags for a server loading ``models``: the local cache when one of them
    enables the response cache, else nothing."""
    if not any(m.response_cache for m in models):
        return []
    return [f"--cache-config=local,size={CACHE_BYTES}"]


def check_client_cache(name: str, client_cache: object, *, decoupled: bool) -> int:
    """The stream workers' answer cache (entries per model), refused for a streaming model."""
    if (
        isinstance(client_cache, bool)
        or not isinstance(client_cache, int)
        or not 0 <= client_cache <= CLIENT_CACHE_LIMIT
    ):
        raise DefinitionError(
            f"model {name!r}: client_cache {client_cache!r} is not a number of entries "
            f"from 0 to {CLIENT_CACHE_LIMIT}",
            fix="give how many answers each stream worker keeps, e.g. client_cache=10000 "
            "(0 keeps none)",
            field="client_cache",
        )
    if client_cache and decoupled:
        raise DefinitionError(
            f"model {name!r}: a decoupled model streams its answers, which no cache can replay",
            fix="drop client_cache",
            field="client_cache",
        )
    return client_cache
