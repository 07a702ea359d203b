"""LLM models on Triton: the vLLM backend and TensorRT-LLM, declared and checked once.

Both return an ordinary :class:`~rtflow.gpu.models.TritonModel` (so serving, the model
repository, compile's checks and the calls treat them like any model) with what these backends
need on top:

* ``decoupled``: ``model_transaction_policy { decoupled: true }``, any number of responses per
  request, which is how a token stream leaves Triton;
* ``gpus_per_instance``: the GPUs one engine spans (tensor x pipeline parallelism), placed by
  the backend itself, so the server's GPU pool must give each pod at least that many whole GPUs
  (:func:`rtflow.gpu.server.triton_serving` checks it);
* for vLLM, the generated ``<model>/<version>/model.json``: the engine arguments, checked
  against vLLM's documented ``AsyncEngineArgs`` fields (:mod:`rtflow.gpu.llm_schemas`).

``vllm_model`` takes text (``text_input``) and answers text (``text_output``), as the vLLM
backend's sample config declares; ``tensorrtllm_model`` is the ``tensorrt_llm`` model of
tensorrtllm_backend's in-flight batcher (token ids in and out: text goes through the
preprocessing / postprocessing models: ``tensorrtllm_ensemble``, from
:mod:`rtflow.gpu.llm_ensemble`, declares them and the ensemble that takes text).
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Final, Literal

from rtflow.errors import DefinitionError
from rtflow.gpu.llm_ensemble import tensorrtllm_ensemble
from rtflow.gpu.llm_schemas import (
    TRTLLM_BATCHING,
    TRTLLM_INPUTS,
    TRTLLM_OUTPUTS,
    TRTLLM_PARAMETERS,
    TRTLLM_SCHEDULER_POLICIES,
    VLLM_DTYPES,
    VLLM_ENGINE_ARGS,
)
from rtflow.gpu.model_checks import _problem, _whole
from rtflow.gpu.models import TritonModel, triton_model
from rtflow.gpu.repository import Repository
from rtflow.gpu.scheduling import InstanceGroup
from rtflow.gpu.tensors import Tensor

__all__ = [
    "MAX_PARALLEL",
    "MODEL_JSON",
    "TRTLLM_DEFAULT_BATCHING",
    "tensorrtllm_ensemble",
    "tensorrtllm_model",
    "vllm_engine_args",
    "vllm_model",
]

MODEL_JSON: Final = "model.json"
MAX_PARALLEL: Final = 16
"""Most GPUs one engine may span (a pool gives a pod at most 16)."""
TRTLLM_DEFAULT_BATCHING: Final = "inflight_fused_batching"

_VLLM_INPUTS: Final = (
    Tensor("text_input", "TYPE_STRING", (1,)),
    Tensor("stream", "TYPE_BOOL", (1,)),
    Tensor("sampling_parameters", "TYPE_STRING", (1,), optional=True),
)
_VLLM_OUTPUTS: Final = (Tensor("text_output", "TYPE_STRING", (-1,)),)
# Arguments vllm_model takes as keywords; engine_args may not set them a second time.
_VLLM_OWN: Final = frozenset(
    {"model", "tensor_parallel_size", "pipeline_parallel_size", "gpu_memory_utilization"}
    | {"max_model_len", "max_num_seqs", "dtype", "enforce_eager"}
)
_JsonScalar = str | int | float | bool | None


def _suggest(name: str, known: frozenset[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"did you mean {close[0]!r}?" if close else "see the backend's documented fields"


def _fraction(value: object, *, model: str, field: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 < value <= 1
    ):
        raise DefinitionError(
            _problem(model, f"{field} {value!r} is not a fraction in (0, 1]"),
            fix=f"give {field} as e.g. 0.9",
            field=field,
        )
    return float(value)


def _json_value(value: object, *, model: str, field: str) -> object:
    """A value JSON carries as it is (no NaN, string keys): what ``model.json`` may hold."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
    elif isinstance(value, Mapping):
        if all(isinstance(k, str) for k in value):
            return {k: _json_value(v, model=model, field=f"{field}.{k}") for k, v in value.items()}
    elif isinstance(value, (list, tuple)):
        return [_json_value(v, model=model, field=field) for v in value]
    raise DefinitionError(
        _problem(model, f"{field} {value!r} cannot be written to model.json"),
        fix="give strings, numbers, booleans, lists or string-keyed dicts",
        field=field,
    )


def _parallel(tensor: object, pipeline: object, *, model: str) -> int:
    tp = _whole(
        tensor,
        model=model,
        field="tensor_parallel_size",
        what="tensor_parallel_size",
        lowest=1,
        highest=MAX_PARALLEL,
    )
    pp = _whole(
        pipeline,
        model=model,
        field="pipeline_parallel_size",
        what="pipeline_parallel_size",
        lowest=1,
        highest=MAX_PARALLEL,
    )
    if tp * pp > MAX_PARALLEL:
        raise DefinitionError(
            _problem(model, f"one engine spans {tp} x {pp} = {tp * pp} GPUs"),
            fix=f"keep tensor_parallel_size x pipeline_parallel_size at most {MAX_PARALLEL}",
            field="tensor_parallel_size",
        )
    return tp * pp


def vllm_engine_args(model: TritonModel) -> dict[str, object]:
    """The engine arguments of a model declared with :func:`vllm_model` (its ``model.json``)."""
    text = dict(model.files).get(MODEL_JSON)
    if model.backend != "vllm" or text is None:
        raise ValueError(f"model {model.name!r} is not a vLLM model")
    loaded = json.loads(text)
    assert isinstance(loaded, dict)
    return loaded


def vllm_model(
    name: str,
    *,
    model: str,
    repository: str | os.PathLike[str] | Repository,
    versions: Sequence[int] = (1,),
    tensor_parallel_size: int = 1,
    pipeline_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    max_num_seqs: int | None = None,
    dtype: str = "auto",
    enforce_eager: bool = False,
    instances: int = 1,
    engine_args: Mapping[str, object] | None = None,
) -> TritonModel:
    """Declare a model served by Triton's vLLM backend.

    Args:
        name: the Triton model name (DNS-1123 label).
        model: the Hugging Face model id or a path inside the server's pod (vLLM's ``model``).
        repository: the model repository (``config.pbtxt`` and ``<version>/model.json`` are
            generated; no weights live there).
        versions: version folders, each gets the same ``model.json``.
        tensor_parallel_size, pipeline_parallel_size: GPUs one engine spans (their product);
            the server's pool must give each pod at least that many whole GPUs per instance.
        gpu_memory_utilization: fraction of each GPU's memory vLLM may take (0, 1].
        max_model_len, max_num_seqs, dtype, enforce_eager: the vLLM engine arguments of those
            names.
        instances: engines per pod (Triton ``instance_group { kind: KIND_MODEL }``).
        engine_args: any other ``AsyncEngineArgs`` field (checked against vLLM's list).
    """
    base = triton_model(
        name,
        backend="vllm",
        inputs=_VLLM_INPUTS,
        outputs=_VLLM_OUTPUTS,
        repository=repository,
        max_batch_size=0,  # vLLM batches itself (continuous batching)
        instance_groups=[InstanceGroup(count=instances, kind="KIND_MODEL")],
        versions=list(versions),
    )
    if not isinstance(model, str) or not model.strip():
        raise DefinitionError(
            _problem(name, f"model {model!r} is not a model id or path"),
            fix="give the Hugging Face id (e.g. 'facebook/opt-125m') or a path in the pod",
            field="model",
        )
    gpus = _parallel(tensor_parallel_size, pipeline_parallel_size, model=name)
    args: dict[str, object] = {
        "model": model,
        "tensor_parallel_size": tensor_parallel_size,
        "pipeline_parallel_size": pipeline_parallel_size,
        "gpu_memory_utilization": _fraction(
            gpu_memory_utilization, model=name, field="gpu_memory_utilization"
        ),
        "disable_log_requests": True,  # one log line per request is too many at LLM rates
    }
    for field, limit in (("max_model_len", max_model_len), ("max_num_seqs", max_num_seqs)):
        if limit is not None:
            args[field] = _whole(
                limit, model=name, field=field, what=field, lowest=1, highest=(1 << 31) - 1
            )
    if dtype not in VLLM_DTYPES:
        raise DefinitionError(
            _problem(name, f"dtype {dtype!r} is not one vLLM knows"),
            fix=f"use one of {', '.join(VLLM_DTYPES)}",
            field="dtype",
        )
    if dtype != "auto":
        args["dtype"] = dtype
    if not isinstance(enforce_eager, bool):
        raise DefinitionError(
            _problem(name, f"enforce_eager {enforce_eager!r} is not a bool"),
            fix="give True or False",
            field="enforce_eager",
        )
    if enforce_eager:
        args["enforce_eager"] = True
    for key, value in (engine_args or {}).items():
        field = f"engine_args.{key}"
        if not isinstance(key, str) or key not in VLLM_ENGINE_ARGS:
            raise DefinitionError(
                _problem(name, f"{key!r} is not a vLLM engine argument"),
                fix=_suggest(str(key), VLLM_ENGINE_ARGS),
                field=field,
            )
        if key in _VLLM_OWN:
            raise DefinitionError(
                _problem(name, f"engine_args sets {key!r}, which vllm_model takes itself"),
                fix=f"pass {key}=... to vllm_model instead",
                field=field,
            )
        args[key] = _json_value(value, model=name, field=field)
    text = json.dumps(args, indent=2, sort_keys=True) + "\n"
    return replace(base, decoupled=True, gpus_per_instance=gpus, files=((MODEL_JSON, text),))


def _setting(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def tensorrtllm_model(
    name: str,
    *,
    engine_dir: str,
    repository: str | os.PathLike[str] | Repository,
    versions: Sequence[int] = (1,),
    gpus: int = 1,
    max_batch_size: int = 64,
    max_queue_delay_microseconds: int = 0,
    batching: Literal["inflight_fused_batching", "inflight_batching", "V1"] = (
        TRTLLM_DEFAULT_BATCHING
    ),
    batch_scheduler_policy: Literal["guaranteed_no_evict", "max_utilization"] = (
        "guaranteed_no_evict"
    ),
    kv_cache_free_gpu_mem_fraction: float = 0.9,
    max_tokens_in_paged_kv_cache: int | None = None,
    max_beam_width: int = 1,
    exclude_input_in_output: bool = True,
    enable_kv_cache_reuse: bool = False,
    enable_chunked_context: bool = False,
    decoupled: bool = True,
    parameters: Mapping[str, str | int | float | bool] | None = None,
) -> TritonModel:
    """Declare the ``tensorrt_llm`` model of TensorRT-LLM's in-flight batcher (token ids in:
    ``input_ids``, ``input_lengths``, ``request_output_len``, ``streaming``; token ids out).

    Args:
        engine_dir: the built engine's folder inside the server's pod (``gpt_model_path``).
        gpus: the engine's world size (tensor x pipeline parallelism it was built with); the
            server's pool must give each pod at least that many whole GPUs.
        max_batch_size, max_queue_delay_microseconds: Triton's batching in front of the
            engine (the template's ``triton_max_batch_size`` and queue delay).
        batching: ``gpt_model_type``: ``inflight_fused_batching`` (in-flight batching) or
            ``V1`` (static batching).
        batch_scheduler_policy, kv_cache_free_gpu_mem_fraction, max_tokens_in_paged_kv_cache,
            max_beam_width, exclude_input_in_output, enable_kv_cache_reuse,
            enable_chunked_context: the backend parameters of those names.
        decoupled: stream tokens as they are generated (needed for ``streaming`` requests).
        parameters: any other parameter of the backend's template (checked against it).
    """
    world = _whole(gpus, model=name, field="gpus", what="gpus", lowest=1, highest=MAX_PARALLEL)
    if batching not in TRTLLM_BATCHING:
        raise DefinitionError(
            _problem(name, f"batching {batching!r} is not a TensorRT-LLM batching type"),
            fix=f"use one of {', '.join(TRTLLM_BATCHING)}",
            field="batching",
        )
    if batch_scheduler_policy not in TRTLLM_SCHEDULER_POLICIES:
        raise DefinitionError(
            _problem(name, f"batch_scheduler_policy {batch_scheduler_policy!r} is not known"),
            fix=f"use one of {', '.join(TRTLLM_SCHEDULER_POLICIES)}",
            field="batch_scheduler_policy",
        )
    if not isinstance(engine_dir, str) or not engine_dir.startswith("/"):
        raise DefinitionError(
            _problem(name, f"engine_dir {engine_dir!r} is not an absolute path in the pod"),
            fix="give the engine folder as the server's pod sees it, e.g. '/engines/llama/1'",
            field="engine_dir",
        )
    if not isinstance(decoupled, bool):
        raise DefinitionError(
            _problem(name, f"decoupled {decoupled!r} is not a bool"),
            fix="give True (stream tokens) or False",
            field="decoupled",
        )
    settings: dict[str, object] = {
        "gpt_model_type": batching,
        "gpt_model_path": engine_dir,
        "batch_scheduler_policy": batch_scheduler_policy,
        "kv_cache_free_gpu_mem_fraction": _fraction(
            kv_cache_free_gpu_mem_fraction, model=name, field="kv_cache_free_gpu_mem_fraction"
        ),
        "max_beam_width": _whole(
            max_beam_width,
            model=name,
            field="max_beam_width",
            what="max_beam_width",
            lowest=1,
            highest=1024,
        ),
        "exclude_input_in_output": exclude_input_in_output,
        "enable_kv_cache_reuse": enable_kv_cache_reuse,
        "enable_chunked_context": enable_chunked_context,
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
    }
    if max_tokens_in_paged_kv_cache is not None:
        settings["max_tokens_in_paged_kv_cache"] = _whole(
            max_tokens_in_paged_kv_cache,
            model=name,
            field="max_tokens_in_paged_kv_cache",
            what="max_tokens_in_paged_kv_cache",
            lowest=1,
            highest=(1 << 40),
        )
    for key, value in (parameters or {}).items():
        if key not in TRTLLM_PARAMETERS:
            raise DefinitionError(
                _problem(name, f"{key!r} is not a TensorRT-LLM backend parameter"),
                fix=_suggest(str(key), TRTLLM_PARAMETERS),
                field=f"parameters.{key}",
            )
        if key in settings:
            raise DefinitionError(
                _problem(name, f"parameters sets {key!r}, which tensorrtllm_model sets itself"),
                fix="pass it as tensorrtllm_model's keyword of that name",
                field=f"parameters.{key}",
            )
        settings[key] = value
    scalar = ()  # the template's reshape: { shape: [ ] } (the backend reads scalars)
    inputs = [
        Tensor("input_ids", *TRTLLM_INPUTS["input_ids"], ragged=True),
        Tensor("input_lengths", *TRTLLM_INPUTS["input_lengths"], reshape=scalar),
        Tensor("request_output_len", *TRTLLM_INPUTS["request_output_len"], reshape=scalar),
        Tensor("end_id", *TRTLLM_INPUTS["end_id"], reshape=scalar, optional=True),
        Tensor("pad_id", *TRTLLM_INPUTS["pad_id"], reshape=scalar, optional=True),
        Tensor("streaming", *TRTLLM_INPUTS["streaming"], reshape=scalar, optional=True),
    ]
    outputs = [Tensor(n, *TRTLLM_OUTPUTS[n]) for n in ("output_ids", "sequence_length")]
    base = triton_model(
        name,
        backend="tensorrtllm",
        inputs=inputs,
        outputs=outputs,
        repository=repository,
        max_batch_size=max_batch_size,
        dynamic_batching={
            "preferred_batch_sizes": [max_batch_size],
            "max_queue_delay_microseconds": max_queue_delay_microseconds,
        },
        # the backend's convention: one KIND_CPU instance, the engine placed on GPUs by it
        instance_groups=[InstanceGroup(count=1, kind="KIND_CPU")],
        versions=list(versions),
        parameters={k: _setting(v) for k, v in settings.items()},
    )
    return replace(base, decoupled=decoupled, gpus_per_instance=world)
