"""The LLM backends' generated configuration, checked against their documented schemas.

* Every generated ``config.pbtxt`` parses as Triton's ``ModelConfig`` (the protobuf that
  tritonclient ships, ``model_config_pb2``): an unknown field or a wrong type fails the parse.
* vLLM's ``model.json`` keys are fields of ``AsyncEngineArgs``: read from vLLM's own
  ``vllm/engine/arg_utils.py``, taken out of the PyPI wheel of the pinned version (downloaded
  by pip at test time, checked against the pinned sha256, cached under ``.tools``); the list
  rtflow pins (:mod:`rtflow.gpu.llm_schemas`) must equal it.
* TensorRT-LLM's backend is not on a package registry, so its parameters and tensors are the
  list pinned from tensorrtllm_backend v0.14.0's template (the source URL is in
  :mod:`rtflow.gpu.llm_schemas`): every generated parameter and tensor must be one of them.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from components import component_missing

from rtflow.errors import DefinitionError
from rtflow.gpu.config import model_files, render_config
from rtflow.gpu.llm import tensorrtllm_model, vllm_engine_args, vllm_model
from rtflow.gpu.llm_schemas import (
    TRTLLM_BATCHING,
    TRTLLM_INPUTS,
    TRTLLM_OUTPUTS,
    TRTLLM_PARAMETERS,
    VLLM_ENGINE_ARGS,
    VLLM_VERSION,
    VLLM_WHEEL,
    VLLM_WHEEL_SHA256,
)
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.server import triton_image, triton_serving

ROOT = Path(__file__).resolve().parents[1]
ARG_UTILS = "vllm/engine/arg_utils.py"


def model_config(text: str) -> Any:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def every_vllm() -> list[Any]:
    return [
        vllm_model("chat", model="facebook/opt-125m", repository="pvc://models/llm"),
        vllm_model(
            "big-chat",
            model="meta-llama/Llama-3.1-70B-Instruct",
            repository="s3://models/llm",
            versions=[1, 2],
            tensor_parallel_size=4,
            pipeline_parallel_size=2,
            gpu_memory_utilization=0.85,
            max_model_len=8192,
            max_num_seqs=128,
            dtype="bfloat16",
            enforce_eager=True,
            instances=1,
            engine_args={"enable_prefix_caching": True, "quantization": "fp8", "seed": 7},
        ),
    ]


def every_trtllm() -> list[Any]:
    return [
        tensorrtllm_model("llama-trt", engine_dir="/engines/llama/1", repository="pvc://m/t"),
        tensorrtllm_model(
            "llama-trt-v1",
            engine_dir="/engines/llama-70b/1",
            repository="pvc://m/t",
            gpus=8,
            max_batch_size=128,
            max_queue_delay_microseconds=100,
            batching="V1",
            batch_scheduler_policy="max_utilization",
            kv_cache_free_gpu_mem_fraction=0.5,
            max_tokens_in_paged_kv_cache=65536,
            max_beam_width=2,
            exclude_input_in_output=False,
            enable_kv_cache_reuse=True,
            enable_chunked_context=True,
            decoupled=False,
            parameters={"normalize_log_probs": False, "cancellation_check_period_ms": 50},
        ),
    ]


# -- config.pbtxt against Triton's ModelConfig ----------------------------------------------------


@pytest.mark.parametrize("model", every_vllm() + every_trtllm(), ids=lambda m: m.name)
def test_each_generated_config_parses_as_triton_model_config(model: Any) -> None:
    config = model_config(render_config(model))
    assert config.name == model.name
    assert config.backend == model.backend
    assert config.model_transaction_policy.decoupled is model.decoupled


def test_vllm_config_is_the_backends_shape() -> None:
    config = model_config(render_config(every_vllm()[0]))
    assert config.max_batch_size == 0  # vLLM batches itself
    assert config.model_transaction_policy.decoupled
    (group,) = config.instance_group
    assert group.kind == group.KIND_MODEL  # the engine places itself on the GPUs
    inputs = {t.name: t for t in config.input}
    assert set(inputs) == {"text_input", "stream", "sampling_parameters"}
    assert inputs["sampling_parameters"].optional
    (output,) = config.output
    assert output.name == "text_output" and list(output.dims) == [-1]


def test_trtllm_config_is_the_templates_shape() -> None:
    for model in every_trtllm():
        config = model_config(render_config(model))
        assert set(config.parameters) <= TRTLLM_PARAMETERS
        assert config.parameters["gpt_model_type"].string_value in TRTLLM_BATCHING
        assert config.parameters["gpt_model_path"].string_value.startswith("/engines/")
        for tensor in config.input:
            data_type, dims = TRTLLM_INPUTS[tensor.name]
            assert (model_config_type(tensor.data_type), tuple(tensor.dims)) == (data_type, dims)
        for tensor in config.output:
            data_type, dims = TRTLLM_OUTPUTS[tensor.name]
            assert (model_config_type(tensor.data_type), tuple(tensor.dims)) == (data_type, dims)
        (group,) = config.instance_group
        assert group.kind == group.KIND_CPU and group.count == 1  # the backend's convention
    big = model_config(render_config(every_trtllm()[1]))
    assert big.parameters["gpt_model_type"].string_value == "V1"
    assert big.parameters["normalize_log_probs"].string_value == "false"
    assert big.dynamic_batching.max_queue_delay_microseconds == 100


def model_config_type(value: int) -> str:
    from tritonclient.grpc import model_config_pb2

    return str(model_config_pb2.DataType.Name(value))


# -- vLLM's model.json against vLLM's own source -------------------------------------------------


def tools_home() -> Path:
    return Path(os.environ.get("RTFLOW_TOOLS", ROOT / ".tools"))


def vllm_arg_utils() -> str:
    """vLLM's ``arg_utils.py`` of the pinned version, from its PyPI wheel (cached)."""
    cached = tools_home() / "schemas" / f"vllm-{VLLM_VERSION}-arg_utils.py"
    if cached.is_file():
        return cached.read_text(encoding="utf-8")
    scratch = tools_home() / "downloads"
    scratch.mkdir(parents=True, exist_ok=True)
    wheel = scratch / VLLM_WHEEL
    if not wheel.is_file():
        done = subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", f"vllm=={VLLM_VERSION}", "--no-deps"),
                *("--only-binary=:all:", "--platform", "manylinux1_x86_64", "-d", str(scratch)),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if done.returncode != 0 or not wheel.is_file():
            component_missing(
                f"cannot download vLLM {VLLM_VERSION} from PyPI: {done.stderr[-300:]}"
            )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert digest == VLLM_WHEEL_SHA256, f"{wheel} is not the pinned wheel ({digest})"
    with zipfile.ZipFile(wheel) as archive:
        text = archive.read(ARG_UTILS).decode("utf-8")
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_text(text, encoding="utf-8")
    wheel.unlink()  # 130 MB for one file: keep only what the test reads
    return text


def engine_arg_fields(source: str) -> set[str]:
    """The dataclass fields of ``EngineArgs`` and ``AsyncEngineArgs``: what
    ``AsyncEngineArgs(**model_json)`` (the vLLM backend's call) accepts."""
    fields: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in ("EngineArgs", "AsyncEngineArgs"):
            fields |= {
                s.target.id
                for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)
            }
    return fields


@pytest.fixture(scope="module")
def upstream_fields() -> set[str]:
    fields = engine_arg_fields(vllm_arg_utils())
    assert {"model", "tensor_parallel_size", "disable_log_requests"} <= fields
    return fields


def test_the_pinned_vllm_field_list_is_vllms_own(upstream_fields: set[str]) -> None:
    assert set(VLLM_ENGINE_ARGS) == upstream_fields


@pytest.mark.parametrize("model", every_vllm(), ids=lambda m: m.name)
def test_each_model_json_holds_only_engine_args(model: Any, upstream_fields: set[str]) -> None:
    files = dict(model_files(model))
    for version in model.versions:
        text = files[f"{model.name}/{version.number}/model.json"]
        args = json.loads(text)
        assert set(args) <= upstream_fields, set(args) - upstream_fields
        assert args == vllm_engine_args(model)
        assert text == json.dumps(args, indent=2, sort_keys=True) + "\n"  # deterministic


def test_the_big_model_json_says_what_was_declared() -> None:
    args = vllm_engine_args(every_vllm()[1])
    assert args == {
        "disable_log_requests": True,
        "dtype": "bfloat16",
        "enable_prefix_caching": True,
        "enforce_eager": True,
        "gpu_memory_utilization": 0.85,
        "max_model_len": 8192,
        "max_num_seqs": 128,
        "model": "meta-llama/Llama-3.1-70B-Instruct",
        "pipeline_parallel_size": 2,
        "quantization": "fp8",
        "seed": 7,
        "tensor_parallel_size": 4,
    }


# -- bad declarations: one line, naming the field -------------------------------------------------


@pytest.mark.parametrize(
    ("declare", "field", "message"),
    [
        (
            lambda: vllm_model("c", model="m", repository="pvc://m/l", engine_args={"tp": 2}),
            "engine_args.tp",
            "not a vLLM engine argument",
        ),
        (
            lambda: vllm_model(
                "c", model="m", repository="pvc://m/l", engine_args={"max_num_seq": 2}
            ),
            "engine_args.max_num_seq",
            "did you mean 'max_num_seqs'",
        ),
        (
            lambda: vllm_model(
                "c", model="m", repository="pvc://m/l", engine_args={"tensor_parallel_size": 2}
            ),
            "engine_args.tensor_parallel_size",
            "pass tensor_parallel_size=... to vllm_model",
        ),
        (
            lambda: vllm_model(
                "c", model="m", repository="pvc://m/l", engine_args={"seed": float("nan")}
            ),
            "engine_args.seed",
            "cannot be written to model.json",
        ),
        (
            lambda: vllm_model("c", model=" ", repository="pvc://m/l"),
            "model",
            "not a model id",
        ),
        (
            lambda: vllm_model(
                "c",
                model="m",
                repository="pvc://m/l",
                tensor_parallel_size=8,
                pipeline_parallel_size=4,
            ),
            "tensor_parallel_size",
            "8 x 4 = 32 GPUs",
        ),
        (
            lambda: vllm_model("c", model="m", repository="pvc://m/l", gpu_memory_utilization=0),
            "gpu_memory_utilization",
            "not a fraction",
        ),
        (
            lambda: tensorrtllm_model("t", engine_dir="engines/x", repository="pvc://m/t"),
            "engine_dir",
            "absolute path",
        ),
        (
            lambda: tensorrtllm_model(
                "t",
                engine_dir="/e",
                repository="pvc://m/t",
                batching="inflight",  # type: ignore[arg-type]
            ),
            "batching",
            "not a TensorRT-LLM batching type",
        ),
        (
            lambda: tensorrtllm_model(
                "t", engine_dir="/e", repository="pvc://m/t", parameters={"gpt_model_typ": "V1"}
            ),
            "parameters.gpt_model_typ",
            "did you mean 'gpt_model_type'",
        ),
        (
            lambda: tensorrtllm_model(
                "t", engine_dir="/e", repository="pvc://m/t", parameters={"gpt_model_path": "/x"}
            ),
            "parameters.gpt_model_path",
            "sets itself",
        ),
        (
            lambda: tensorrtllm_model("t", engine_dir="/e", repository="pvc://m/t", gpus=0),
            "gpus",
            "out of range",
        ),
    ],
)
def test_bad_declarations_are_one_line_errors(declare: Any, field: str, message: str) -> None:
    with pytest.raises(DefinitionError) as info:
        declare()
    assert info.value.field == field, str(info.value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


# -- GPU pool placement ---------------------------------------------------------------------------


def test_an_engine_must_fit_in_one_pod_of_its_pool() -> None:
    chat = vllm_model("chat", model="m", repository="pvc://m/l", tensor_parallel_size=4)
    triton_serving("ok", [chat], pool=gpu_pool("h100", product="NVIDIA-H100", gpus_per_pod=4))
    with pytest.raises(DefinitionError, match="needs 4 GPU\\(s\\) per pod") as info:
        triton_serving("small", [chat], pool=gpu_pool("l4", product="NVIDIA-L4", gpus_per_pod=2))
    assert info.value.field == "models[chat]"
    assert "gpus_per_pod=4" in str(info.value)


def test_two_engines_per_pod_need_twice_the_gpus() -> None:
    chat = vllm_model(
        "chat", model="m", repository="pvc://m/l", tensor_parallel_size=2, instances=2
    )
    with pytest.raises(DefinitionError, match="2 engine\\(s\\) of 2"):
        triton_serving("s", [chat], pool=gpu_pool("h", product="NVIDIA-H100", gpus_per_pod=2))


def test_an_engine_cannot_span_mig_slices() -> None:
    chat = vllm_model("chat", model="m", repository="pvc://m/l", tensor_parallel_size=2)
    pool = gpu_pool(
        "a100-mig",
        product="NVIDIA-A100-SXM4-40GB",
        gpus_per_pod=2,
        mig_profile="3g.20gb",
        mig_strategy="mixed",
    )
    with pytest.raises(DefinitionError, match="MIG slices"):
        triton_serving("s", [chat], pool=pool)
    single = vllm_model("small", model="m", repository="pvc://m/l")
    triton_serving("s", [single], pool=pool)  # one GPU's worth: a slice will do


def test_llm_models_need_a_gpu_pool_and_cannot_run_on_cpu() -> None:
    for model in (every_vllm()[0], every_trtllm()[0]):
        assert model.needs_gpu
        with pytest.raises(DefinitionError, match="has no GPU pool"):
            triton_serving("s", [model], cpu="1", memory="1Gi")
        with pytest.raises(DefinitionError, match="cannot run locally on CPU"):
            render_config(model, cpu_only=True)


def test_an_llm_server_runs_the_image_with_its_backend() -> None:
    pool = gpu_pool("h100", product="NVIDIA-H100", gpus_per_pod=2)
    chat, trt = every_vllm()[0], every_trtllm()[0]
    assert triton_serving("v", [chat], pool=pool).image == (
        "nvcr.io/nvidia/tritonserver:24.10-vllm-python-py3"
    )
    assert triton_serving("t", [trt], pool=pool).image == (
        "nvcr.io/nvidia/tritonserver:24.10-trtllm-python-py3"
    )
    assert triton_serving("v", [chat], pool=pool, image=triton_image("25.01", "vllm-python-py3"))
    assert triton_serving("v", [chat], pool=pool, image="ghcr.io/acme/triton-vllm:1.0")
    with pytest.raises(DefinitionError, match="has no vllm backend") as info:
        triton_serving("v", [chat], pool=pool, image=triton_image("24.10"))
    assert info.value.field == "image"
    assert "triton_image('24.10', 'vllm-python-py3')" in str(info.value)
    with pytest.raises(DefinitionError, match="no image has"):
        triton_serving("both", [chat, trt], pool=pool)
