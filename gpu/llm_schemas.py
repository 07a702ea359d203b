"""The documented fields of Triton's two LLM backends, pinned with where they come from.

rtflow generates these backends' configuration (:mod:`rtflow.gpu.llm`) and refuses, at compile
time, a field the backend does not know: a typo in an engine argument otherwise surfaces as a
model that fails to load on a GPU node, minutes after the rollout.

* **vLLM backend** (``triton-inference-server/vllm_backend``): ``<model>/1/model.json`` is
  passed as keyword arguments to vLLM's ``AsyncEngineArgs`` (``AsyncEngineArgs(**model.json)``
  in the backend's ``src/model.py``), so its keys are the dataclass fields of ``EngineArgs``
  and ``AsyncEngineArgs`` in ``vllm/engine/arg_utils.py``. Pinned from vLLM **0.5.5**, the
  vLLM of Triton's ``24.10-vllm-python-py3`` image (rtflow's default Triton release):
  https://github.com/vllm-project/vllm/blob/v0.5.5/vllm/engine/arg_utils.py (the PyPI wheel
  ``vllm-0.5.5-cp38-abi3-manylinux1_x86_64.whl``, sha256 below). tests/test_llm_schemas.py
  reads that file out of the wheel again and compares.
* **TensorRT-LLM backend** (``triton-inference-server/tensorrtllm_backend``): the
  ``tensorrt_llm`` model's ``config.pbtxt`` template
  https://github.com/triton-inference-server/tensorrtllm_backend/blob/v0.14.0/all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt
  (tag v0.14.0, commit 9958c21167e1a8e6bbddafc09b284904aaf22ab1, the TensorRT-LLM of Triton
  24.10) and its documentation ``docs/model_config.md`` at the same tag: the ``parameters``
  keys, the values ``gpt_model_type`` (``batching_strategy``) and ``batch_scheduler_policy``
  take, and the tensors.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "TRTLLM_BATCHING",
    "TRTLLM_INPUTS",
    "TRTLLM_OUTPUTS",
    "TRTLLM_PARAMETERS",
    "TRTLLM_SCHEDULER_POLICIES",
    "TRTLLM_SOURCE",
    "VLLM_DTYPES",
    "VLLM_ENGINE_ARGS",
    "VLLM_SOURCE",
    "VLLM_VERSION",
    "VLLM_WHEEL",
    "VLLM_WHEEL_SHA256",
]

VLLM_VERSION: Final = "0.5.5"
VLLM_SOURCE: Final = "https://github.com/vllm-project/vllm/blob/v0.5.5/vllm/engine/arg_utils.py"
VLLM_WHEEL: Final = "vllm-0.5.5-cp38-abi3-manylinux1_x86_64.whl"
VLLM_WHEEL_SHA256: Final = "64fb5b8a3300af3006a3b9ba4eacdf5f4bd2a85887a695e6587684447c49eb8e"

VLLM_ENGINE_ARGS: Final = frozenset(
    {
        # EngineArgs (vLLM 0.5.5), in the dataclass's order
        "model",
        "served_model_name",
        "tokenizer",
        "skip_tokenizer_init",
        "tokenizer_mode",
        "trust_remote_code",
        "download_dir",
        "load_format",
        "dtype",
        "kv_cache_dtype",
        "quantization_param_path",
        "seed",
        "max_model_len",
        "worker_use_ray",
        "distributed_executor_backend",
        "pipeline_parallel_size",
        "tensor_parallel_size",
        "max_parallel_loading_workers",
        "block_size",
        "enable_prefix_caching",
        "disable_sliding_window",
        "use_v2_block_manager",
        "swap_space",
        "cpu_offload_gb",
        "gpu_memory_utilization",
        "max_num_batched_tokens",
        "max_num_seqs",
        "max_logprobs",
        "disable_log_stats",
        "revision",
        "code_revision",
        "rope_scaling",
        "rope_theta",
        "tokenizer_revision",
        "quantization",
        "enforce_eager",
        "max_context_len_to_capture",
        "max_seq_len_to_capture",
        "disable_custom_all_reduce",
        "tokenizer_pool_size",
        "tokenizer_pool_type",
        "tokenizer_pool_extra_config",
        "limit_mm_per_prompt",
        "enable_lora",
        "max_loras",
        "max_lora_rank",
        "enable_prompt_adapter",
        "max_prompt_adapters",
        "max_prompt_adapter_token",
        "fully_sharded_loras",
        "lora_extra_vocab_size",
        "long_lora_scaling_factors",
        "lora_dtype",
        "max_cpu_loras",
        "device",
        "num_scheduler_steps",
        "ray_workers_use_nsight",
        "num_gpu_blocks_override",
        "num_lookahead_slots",
        "model_loader_extra_config",
        "ignore_patterns",
        "preemption_mode",
        "scheduler_delay_factor",
        "enable_chunked_prefill",
        "guided_decoding_backend",
        "speculative_model",
        "speculative_model_quantization",
        "speculative_draft_tensor_parallel_size",
        "num_speculative_tokens",
        "speculative_max_model_len",
        "speculative_disable_by_batch_size",
        "ngram_prompt_lookup_max",
        "ngram_prompt_lookup_min",
        "spec_decoding_acceptance_method",
        "typical_acceptance_sampler_posterior_threshold",
        "typical_acceptance_sampler_posterior_alpha",
        "qlora_adapter_name_or_path",
        "disable_logprobs_during_spec_decoding",
        "otlp_traces_endpoint",
        "collect_detailed_traces",
        # AsyncEngineArgs(EngineArgs)
        "engine_use_ray",
        "disable_log_requests",
    }
)
"""The keys ``model.json`` may hold: vLLM 0.5.5's ``EngineArgs`` and ``AsyncEngineArgs``."""

VLLM_DTYPES: Final = ("auto", "half", "float16", "bfloat16", "float", "float32")
"""``--dtype`` choices in the same ``arg_utils.py``."""

TRTLLM_SOURCE: Final = (
    "https://github.com/triton-inference-server/tensorrtllm_backend/blob/v0.14.0/"
    "all_models/inflight_batcher_llm/tensorrt_llm/config.pbtxt"
)

TRTLLM_PARAMETERS: Final = frozenset(
    {
        "max_beam_width",
        "FORCE_CPU_ONLY_INPUT_TENSORS",
        "gpt_model_type",
        "gpt_model_path",
        "encoder_model_path",
        "max_tokens_in_paged_kv_cache",
        "max_attention_window_size",
        "sink_token_length",
        "batch_scheduler_policy",
        "kv_cache_free_gpu_mem_fraction",
        "cross_kv_cache_fraction",
        "kv_cache_host_memory_bytes",
        "kv_cache_onboard_blocks",
        "enable_trt_overlap",
        "exclude_input_in_output",
        "cancellation_check_period_ms",
        "stats_check_period_ms",
        "iter_stats_max_iterations",
        "request_stats_max_iterations",
        "enable_kv_cache_reuse",
        "normalize_log_probs",
        "enable_chunked_context",
        "gpu_device_ids",
        "participant_ids",
        "lora_cache_optimal_adapter_size",
        "lora_cache_max_adapter_size",
        "lora_cache_gpu_memory_fraction",
        "lora_cache_host_memory_bytes",
        "decoding_mode",
        "executor_worker_path",
        "medusa_choices",
        "gpu_weights_percent",
        "enable_context_fmha_fp32_acc",
        "multi_block_mode",
    }
)
"""The ``parameters`` keys of the ``tensorrt_llm`` model's config template (v0.14.0)."""

TRTLLM_BATCHING: Final = ("inflight_fused_batching", "inflight_batching", "V1")
"""``gpt_model_type`` (the template's ``${batching_strategy}``), per docs/model_config.md."""

TRTLLM_SCHEDULER_POLICIES: Final = ("guaranteed_no_evict", "max_utilization")
"""``batch_scheduler_policy`` values, per docs/model_config.md."""

TRTLLM_INPUTS: Final[dict[str, tuple[str, tuple[int, ...]]]] = {
    "input_ids": ("TYPE_INT32", (-1,)),
    "input_lengths": ("TYPE_INT32", (1,)),
    "request_output_len": ("TYPE_INT32", (1,)),
    "end_id": ("TYPE_INT32", (1,)),
    "pad_id": ("TYPE_INT32", (1,)),
    "beam_width": ("TYPE_INT32", (1,)),
    "temperature": ("TYPE_FP32", (1,)),
    "runtime_top_k": ("TYPE_INT32", (1,)),
    "runtime_top_p": ("TYPE_FP32", (1,)),
    "random_seed": ("TYPE_UINT64", (1,)),
    "stop": ("TYPE_BOOL", (1,)),
    "streaming": ("TYPE_BOOL", (1,)),
}
"""Input tensors of the template rtflow may declare (name -> data type, dims); a subset."""

TRTLLM_OUTPUTS: Final[dict[str, tuple[str, tuple[int, ...]]]] = {
    "output_ids": ("TYPE_INT32", (-1, -1)),
    "sequence_length": ("TYPE_INT32", (-1,)),
    "cum_log_probs": ("TYPE_FP32", (-1,)),
    "output_log_probs": ("TYPE_FP32", (-1, -1)),
    "context_logits": ("TYPE_FP32", (-1, -1)),
    "generation_logits": ("TYPE_FP32", (-1, -1, -1)),
}
"""Output tensors of the template (name -> data type, dims)."""
