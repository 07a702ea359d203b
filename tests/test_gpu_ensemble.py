"""Triton ensembles (``rtflow.gpu.ensemble``, ``rtflow.gpu.llm_ensemble``) without a Triton:
every declaration rule in one line, the rendered ``ensemble_scheduling`` parsed back as
Triton's ``ModelConfig``, the repository layout, the server's checks and ``rtflow.generate``
compiling against a TensorRT-LLM text ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from local_pipelines import ensemble as pipelines
from local_pipelines.ensemble import DETOKENIZER, GENERATOR, SHOUT, SPELL, TOKENIZER, UPPER
from tritonclient.grpc import model_config_pb2  # type: ignore[import-untyped, unused-ignore]

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.gpu.config import model_files, render_config, repository_layout, write_repository
from rtflow.gpu.ensemble import EnsembleStep, step_models, triton_ensemble
from rtflow.gpu.llm import tensorrtllm_ensemble, tensorrtllm_model, vllm_model
from rtflow.gpu.llm_schemas import TRTLLM_INPUTS
from rtflow.gpu.models import TritonModel, triton_model
from rtflow.gpu.pools import gpu_pool
from rtflow.gpu.server import triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.stages.inference import called_models, needs_triton

REPO = "pvc://triton-models/ensemble"
TEXT = Tensor("text_input", "TYPE_STRING", (1,))
BUDGET = Tensor("max_tokens", "TYPE_INT32", (1,))
OUT = Tensor("text_output", "TYPE_STRING", (1,))


def parse(text: str) -> Any:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def model(name: str, inputs: list[Tensor], outputs: list[Tensor], **kw: Any) -> TritonModel:
    return triton_model(
        name, backend="python", inputs=inputs, outputs=outputs, repository=REPO, **kw
    )


def spell_steps() -> list[EnsembleStep]:
    return [
        EnsembleStep(TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "_ids"}),
        EnsembleStep(
            GENERATOR,
            inputs={"ids": "_ids", "max_tokens": "max_tokens"},
            outputs={"ids_out": "_tokens"},
        ),
        EnsembleStep(DETOKENIZER, inputs={"ids": "_tokens"}, outputs={"text": "text_output"}),
    ]


def declare(steps: list[EnsembleStep] | None = None, **kw: Any) -> TritonModel:
    options: dict[str, Any] = {"inputs": [TEXT, BUDGET], "outputs": [OUT]}
    options.update(kw)
    return triton_ensemble("spell", steps=spell_steps() if steps is None else steps, **options)


def refused(match: str, field: str, **kw: Any) -> DefinitionError:
    with pytest.raises(DefinitionError, match=match) as caught:
        declare(**kw)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)
    return caught.value


# -- the declaration --------------------------------------------------------------------------


def test_an_ensemble_is_a_model_whose_config_triton_parses() -> None:
    config = parse(render_config(SPELL))
    assert config.name == "spell"
    assert config.platform == "ensemble"
    assert config.backend == ""
    assert config.max_batch_size == 0
    assert config.model_transaction_policy.decoupled  # its generator step is decoupled
    assert not config.instance_group and not config.model_warmup  # Triton refuses both
    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["tokenizer", "generator", "detokenizer"]
    assert all(s.model_version == -1 for s in steps)
    assert dict(steps[1].input_map) == {"ids": "_ids", "max_tokens": "max_tokens"}
    assert dict(steps[1].output_map) == {"ids_out": "_tokens"}
    assert dict(steps[2].output_map) == {"text": "text_output"}
    assert [i.name for i in config.input] == ["text_input", "max_tokens"]
    shout = parse(render_config(SHOUT))
    assert not shout.model_transaction_policy.decoupled
    assert dict(shout.ensemble_scheduling.step[0].output_map) == {"ids": "_ids", "count": "length"}


def test_the_rendering_is_deterministic_whatever_the_mapping_order() -> None:
    reordered = [
        EnsembleStep(TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "_ids"}),
        EnsembleStep(
            GENERATOR,
            inputs={"max_tokens": "max_tokens", "ids": "_ids"},
            outputs={"ids_out": "_tokens"},
        ),
        EnsembleStep(DETOKENIZER, inputs={"ids": "_tokens"}, outputs={"text": "text_output"}),
    ]
    assert render_config(declare()) == render_config(SPELL) == render_config(declare(reordered))
    assert declare(reordered) == SPELL
    assert render_config(SPELL, cpu_only=True) == render_config(SPELL)


def test_the_repository_layout_has_the_empty_version_folder(tmp_path: Path) -> None:
    assert [path for path, _ in model_files(SPELL)] == ["spell/1/.gitkeep", "spell/config.pbtxt"]
    layout = repository_layout([SPELL])
    assert layout["spell/1/.gitkeep"] == ""
    written = write_repository([SPELL], tmp_path)
    assert (written / "spell" / "1").is_dir()
    assert (written / "spell" / "config.pbtxt").read_text() == render_config(SPELL)


def test_defaults_follow_the_steps() -> None:
    batched = [
        model("a", [Tensor("x", "FP32", (4,))], [Tensor("y", "FP32", (4,))], max_batch_size=16),
        model("b", [Tensor("y", "FP32", (4,))], [Tensor("z", "FP32", (4,))], max_batch_size=8),
    ]
    made = triton_ensemble(
        "pair",
        steps=[
            EnsembleStep(batched[0], inputs={"x": "in"}, outputs={"y": "_mid"}),
            EnsembleStep(batched[1], inputs={"y": "_mid"}, outputs={"z": "out"}),
        ],
        inputs=[Tensor("in", "FP32", (4,))],
        outputs=[Tensor("out", "FP32", (4,))],
    )
    assert made.max_batch_size == 8  # the smallest of the step models'
    assert made.repository == batched[0].repository
    assert not made.decoupled
    assert step_models(made) == tuple(batched)
    assert step_models(SPELL, SHOUT) == (TOKENIZER, GENERATOR, DETOKENIZER, UPPER)


def test_dims_agree_with_wildcards_and_across_batching() -> None:
    # a non-batching model's [-1, 4] meets a batching model's [4] (Triton's full dims)
    flat = model("flat", [Tensor("x", "FP32", (-1, 4))], [Tensor("y", "FP32", (-1, 4))])
    batched = model(
        "batched", [Tensor("y", "FP32", (4,))], [Tensor("z", "FP32", (-1,))], max_batch_size=8
    )
    made = triton_ensemble(
        "mixed",
        steps=[
            EnsembleStep(flat, inputs={"x": "in"}, outputs={"y": "_mid"}),
            EnsembleStep(batched, inputs={"y": "_mid"}, outputs={"z": "out"}),
        ],
        inputs=[Tensor("in", "FP32", (-1, 4))],
        outputs=[Tensor("out", "FP32", (7,))],  # -1 in the step's output matches 7
        max_batch_size=0,
    )
    assert made.max_batch_size == 0


# -- every rule, one line each ----------------------------------------------------------------


def test_steps_must_be_declared_models_in_ensemble_steps() -> None:
    refused("non-empty list of steps", "steps", steps=[])
    refused("is not an EnsembleStep", "steps[0]", steps=[("tokenizer", {})])
    not_model = EnsembleStep("tokenizer", inputs={"text": "text_input"}, outputs={"ids": "x"})  # type: ignore[arg-type]
    refused("not a declared model", "steps[0].model", steps=[not_model, *spell_steps()[1:]])
    with pytest.raises(DefinitionError, match="is not a mapping of tensor names"):
        EnsembleStep(TOKENIZER, inputs=["text"], outputs={"ids": "_ids"})  # type: ignore[arg-type]
    empty = EnsembleStep(TOKENIZER, inputs={}, outputs={"ids": "_ids"})
    refused("maps no inputs", "steps[0].inputs", steps=[empty, *spell_steps()[1:]])


def test_a_step_running_itself_or_two_models_of_one_name_is_refused() -> None:
    itself = EnsembleStep(SPELL, inputs={"text_input": "text_input"}, outputs={"x": "y"})
    refused("runs the ensemble itself", "steps[0].model", steps=[itself])
    twin = model("detokenizer", [Tensor("ids", "INT32", (-1,))], [Tensor("t", "STRING", (1,))])
    steps = [
        *spell_steps()[:2],
        EnsembleStep(twin, inputs={"ids": "_tokens"}, outputs={"t": "text_output"}),
        spell_steps()[2],
    ]
    refused("two different models named 'detokenizer'", "steps[3].model", steps=steps)


def test_a_model_under_canary_is_no_step() -> None:
    rolled = model(
        "detokenizer",
        [Tensor("ids", "INT32", (-1,))],
        [Tensor("text", "STRING", (1,))],
        versions=[1, 2],
        canary=rtflow.canary(),
    )
    steps = spell_steps()
    steps[2] = EnsembleStep(rolled, inputs={"ids": "_tokens"}, outputs={"text": "text_output"})
    refused("which is rolled out by a canary", "steps[2].model", steps=steps)


def test_a_step_maps_only_what_its_model_declares() -> None:
    steps = spell_steps()
    steps[0] = EnsembleStep(TOKENIZER, inputs={"txt": "text_input"}, outputs={"ids": "_ids"})
    refused("maps input 'txt', which it lacks", "steps[0].inputs[txt]", steps=steps)
    steps[0] = EnsembleStep(TOKENIZER, inputs={"text": "text_input"}, outputs={"idz": "_ids"})
    refused("maps output 'idz', which it lacks", "steps[0].outputs[idz]", steps=steps)


def test_every_tensor_read_comes_from_the_request_or_an_earlier_step() -> None:
    steps = spell_steps()
    steps[1] = EnsembleStep(
        GENERATOR, inputs={"ids": "_idz", "max_tokens": "max_tokens"}, outputs={"ids_out": "_t"}
    )
    refused(
        "neither an ensemble input nor an output of an earlier step",
        "steps[1].inputs[ids]",
        steps=steps,
    )
    error = refused(
        "reads '_tokens', which step 2 produces after it",
        "steps[1].inputs[ids]",
        steps=[spell_steps()[0], spell_steps()[2], spell_steps()[1]],
    )
    assert "order data flows" in error.fix
    # a cycle is a step reading what it (or a later step) produces
    loop = model("loop", [Tensor("a", "INT32", (-1,))], [Tensor("b", "INT32", (-1,))])
    cycle = [
        EnsembleStep(loop, inputs={"a": "_b"}, outputs={"b": "_b"}),
        *spell_steps(),
    ]
    refused("which step 0 produces after it", "steps[0].inputs[a]", steps=cycle)


def test_every_required_step_input_is_fed() -> None:
    steps = spell_steps()
    steps[1] = EnsembleStep(GENERATOR, inputs={"ids": "_ids"}, outputs={"ids_out": "_tokens"})
    refused("does not feed its input 'max_tokens'", "steps[1].inputs", steps=steps)
    # an optional model input may stay unfed
    hinted = model(
        "hinted",
        [Tensor("ids", "INT32", (-1,)), Tensor("hint", "STRING", (1,), optional=True)],
        [Tensor("text", "STRING", (1,))],
    )
    steps = spell_steps()
    steps[2] = EnsembleStep(hinted, inputs={"ids": "_tokens"}, outputs={"text": "text_output"})
    assert declare(steps).ensemble_steps[2].model is hinted


def test_data_types_and_dims_agree_along_every_edge() -> None:
    wide = model("wide", [Tensor("ids", "INT64", (-1,))], [Tensor("text", "STRING", (1,))])
    steps = spell_steps()
    steps[2] = EnsembleStep(wide, inputs={"ids": "_tokens"}, outputs={"text": "text_output"})
    error = refused("TYPE_INT32 as output 'ids_out' of step 1", "steps[2].inputs[ids]", steps=steps)
    assert "TYPE_INT64 as input 'ids' of step 2 (model 'wide')" in str(error)
    square = model("square", [Tensor("ids", "INT32", (-1, 2))], [Tensor("text", "STRING", (1,))])
    steps[2] = EnsembleStep(square, inputs={"ids": "_tokens"}, outputs={"text": "text_output"})
    refused(r"has dims \[-1\] as output 'ids_out'", "steps[2].inputs[ids]", steps=steps)
    # the ensemble's own declaration meets what the producing step gives
    refused(
        "'text_output' is TYPE_INT32 as ensemble output",
        "steps[2].outputs[text]",
        outputs=[Tensor("text_output", "INT32", (1,))],
    )
    refused(
        "'max_tokens' is TYPE_INT64 as ensemble input",
        "steps[1].inputs[max_tokens]",
        inputs=[TEXT, Tensor("max_tokens", "INT64", (1,))],
    )


def test_every_output_is_produced_by_exactly_one_step() -> None:
    refused(
        "no step produces ensemble output 'extra'",
        "outputs[extra]",
        outputs=[OUT, Tensor("extra", "STRING", (1,))],
    )
    steps = spell_steps()
    steps.append(
        EnsembleStep(DETOKENIZER, inputs={"ids": "_tokens"}, outputs={"text": "text_output"})
    )
    refused(
        "produces 'text_output', which is already output 'text'",
        "steps[3].outputs[text]",
        steps=steps,
    )
    steps = spell_steps()
    steps[0] = EnsembleStep(
        TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "_ids", "count": "_ids"}
    )
    refused("maps two outputs to '_ids'", "steps[0].outputs", steps=steps)
    steps[0] = EnsembleStep(TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "max_tokens"})
    refused("already ensemble input 'max_tokens'", "steps[0].outputs[ids]", steps=steps)
    refused(
        "'text_input' is both an input and an output",
        "outputs[text_input]",
        outputs=[OUT, TEXT],
    )


def test_nothing_is_left_unused() -> None:
    refused(
        "ensemble input 'unused' feeds no step",
        "inputs[unused]",
        inputs=[TEXT, BUDGET, Tensor("unused", "STRING", (1,))],
    )
    steps = spell_steps()
    steps[0] = EnsembleStep(
        TOKENIZER, inputs={"text": "text_input"}, outputs={"ids": "_ids", "count": "_count"}
    )
    refused("tensor '_count' .* is read by no later step", "steps[0].outputs", steps=steps)


def test_max_batch_size_is_not_above_a_step_models() -> None:
    small = model(
        "small", [Tensor("x", "FP32", (4,))], [Tensor("y", "FP32", (4,))], max_batch_size=8
    )
    steps = [EnsembleStep(small, inputs={"x": "in"}, outputs={"y": "out"})]
    with pytest.raises(DefinitionError, match="max_batch_size 16 is above step model 'small'"):
        triton_ensemble(
            "e",
            steps=steps,
            inputs=[Tensor("in", "FP32", (4,))],
            outputs=[Tensor("out", "FP32", (4,))],
            max_batch_size=16,
        )
    refused("max_batch_size -1 is out of range", "max_batch_size", max_batch_size=-1)


def test_decoupled_when_and_only_when_a_step_model_is() -> None:
    assert declare(decoupled=True).decoupled
    refused(
        "decoupled=False, but step model 'generator' is decoupled", "decoupled", decoupled=False
    )
    with pytest.raises(DefinitionError, match="decoupled=True, but no step model is") as caught:
        triton_ensemble(
            "shouty",
            steps=list(SHOUT.ensemble_steps),
            inputs=[TEXT],
            outputs=list(SHOUT.outputs),
            decoupled=True,
        )
    assert caught.value.field == "decoupled"


def test_no_step_reads_tensors_of_different_decoupled_streams() -> None:
    # the detokenizer reading the generator's stream and the request: Triton refuses it
    mixer = model(
        "mixer",
        [Tensor("ids", "INT32", (-1,)), Tensor("prompt", "STRING", (1,))],
        [Tensor("text", "STRING", (1,))],
    )
    steps = spell_steps()
    steps[2] = EnsembleStep(
        mixer, inputs={"ids": "_tokens", "prompt": "text_input"}, outputs={"text": "text_output"}
    )
    refused("come from different decoupled steps", "steps[2].inputs", steps=steps)
    # two decoupled generators feeding one step: refused too
    other = model(
        "generator-b",
        [Tensor("ids", "INT32", (-1,)), Tensor("max_tokens", "INT32", (1,))],
        [Tensor("ids_out", "INT32", (-1,))],
        decoupled=True,
    )
    join = model(
        "join",
        [Tensor("a", "INT32", (-1,)), Tensor("b", "INT32", (-1,))],
        [Tensor("text", "STRING", (1,))],
    )
    steps = [
        spell_steps()[0],
        spell_steps()[1],
        EnsembleStep(
            other, inputs={"ids": "_ids", "max_tokens": "max_tokens"}, outputs={"ids_out": "_b"}
        ),
        EnsembleStep(join, inputs={"a": "_tokens", "b": "_b"}, outputs={"text": "text_output"}),
    ]
    refused(
        r"step 3 \(model 'join'\) reads tensors that come from different",
        "steps[3].inputs",
        steps=steps,
    )


# -- serving ----------------------------------------------------------------------------------


def test_a_server_serves_every_step_model() -> None:
    with pytest.raises(
        DefinitionError, match="serves ensemble 'spell' but not its step model 'generator'"
    ) as caught:
        triton_serving("t", [SPELL, TOKENIZER, DETOKENIZER])
    assert caught.value.field == "models"
    assert "add 'generator' to models" in caught.value.fix
    other = model("generator", [Tensor("ids", "INT32", (-1,))], [Tensor("o", "INT32", (-1,))])
    with pytest.raises(DefinitionError, match="its model 'generator' is not the one"):
        triton_serving("t", [SPELL, TOKENIZER, other, DETOKENIZER])
    served = triton_serving("t", [SPELL, *step_models(SPELL)])
    assert [m.name for m in served.models] == ["detokenizer", "generator", "spell", "tokenizer"]


def test_gpu_placement_follows_the_step_models() -> None:
    assert not SPELL.needs_gpu
    on_gpu = model(
        "gpu-gen",
        [Tensor("ids", "INT32", (-1,)), Tensor("max_tokens", "INT32", (1,))],
        [Tensor("ids_out", "INT32", (-1,))],
        decoupled=True,
        instance_groups=[{"count": 1, "kind": "KIND_GPU"}],
    )
    steps = spell_steps()
    steps[1] = EnsembleStep(
        on_gpu, inputs={"ids": "_ids", "max_tokens": "max_tokens"}, outputs={"ids_out": "_tokens"}
    )
    made = declare(steps)
    assert made.needs_gpu
    with pytest.raises(DefinitionError, match="runs on GPUs"):
        triton_serving("t", [made, *step_models(made)])
    pool = gpu_pool("l4", product="NVIDIA-L4", cloud="gke", accelerator="nvidia-l4")
    assert triton_serving("t", [made, *step_models(made)], pool=pool).pool == pool


def test_a_local_run_loads_the_ensemble_and_its_step_models() -> None:
    pipeline = pipelines.ensemble_generation.build()
    names = [m.name for m in called_models(pipeline, needs_triton(pipeline))]
    assert names == ["detokenizer", "generator", "spell", "tokenizer"]


# -- calls ------------------------------------------------------------------------------------


def test_generate_compiles_against_a_decoupled_ensemble_and_infer_against_the_other() -> None:
    bundle = compile_pipelines(
        [pipelines.ensemble_generation.build(), pipelines.ensemble_shout.build()]
    )
    paths = sorted(f.path for f in bundle.files if f.pipeline == "ensemble-generation")
    assert "model-repository/spell/1/.gitkeep" in paths
    assert "model-repository/spell/config.pbtxt" in paths
    assert "model-repository/generator/config.pbtxt" in paths
    args = sorted(
        str(a)
        for m in bundle.manifests
        if m.kind == "Deployment" and m.pipeline == "ensemble-generation"
        for c in m.body["spec"]["template"]["spec"]["containers"]
        for a in c.get("args", [])
        if "--load-model" in str(a)
    )
    assert "--load-model=spell" in args and "--load-model=tokenizer" in args
    with pytest.raises(DefinitionError, match="'shout-ensemble' is not decoupled"):

        @rtflow.pipeline(name="wrong")
        def wrong(message: str) -> None:
            rtflow.generate(pipelines.SERVER, SHOUT, message)

        wrong.build()


# -- TensorRT-LLM ---------------------------------------------------------------------------


def trt_llm(**kw: Any) -> TritonModel:
    return tensorrtllm_model(
        "llama-trt", engine_dir="/engines/llama/1", repository="pvc://triton-models/llm", **kw
    )


def test_the_tensorrtllm_text_ensemble_has_the_upstream_names() -> None:
    llm = trt_llm(gpus=2)
    made = tensorrtllm_ensemble("llama", llm=llm, tokenizer_dir="/engines/llama/tokenizer")
    pre, engine, post = step_models(made)
    assert (pre.name, engine, post.name) == ("llama-preprocessing", llm, "llama-postprocessing")
    assert made.decoupled and made.max_batch_size == llm.max_batch_size == 64
    assert made.needs_gpu
    assert [t.name for t in made.inputs] == ["text_input", "max_tokens", "stream"]
    assert [t.name for t in made.outputs] == ["text_output"]
    config = parse(render_config(made))
    steps = config.ensemble_scheduling.step
    assert [s.model_name for s in steps] == [pre.name, "llama-trt", post.name]
    assert dict(steps[0].input_map) == {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens"}
    assert dict(steps[1].input_map) == {
        "input_ids": "_INPUT_ID",
        "input_lengths": "_REQUEST_INPUT_LEN",
        "request_output_len": "_REQUEST_OUTPUT_LEN",
        "end_id": "_PREPROCESSOR_END_ID",
        "pad_id": "_PREPROCESSOR_PAD_ID",
        "streaming": "stream",
    }
    assert set(steps[1].input_map) <= set(TRTLLM_INPUTS)
    assert dict(steps[2].output_map) == {"OUTPUT": "text_output"}
    pre_config = parse(render_config(pre))
    assert {p: v.string_value for p, v in pre_config.parameters.items()} == {
        "tokenizer_dir": "/engines/llama/tokenizer",
        "add_special_tokens": "true",
        "visual_model_path": "",
        "gpt_model_path": "/engines/llama/1",
    }
    # upstream's preprocessing passes the budget on under the same name
    assert "REQUEST_OUTPUT_LEN" in [i.name for i in pre_config.input]
    assert "REQUEST_OUTPUT_LEN" in [o.name for o in pre_config.output]
    post_config = parse(render_config(post))
    assert post_config.HasField("dynamic_batching")
    assert post_config.parameters["skip_special_tokens"].string_value == "true"
    not_decoupled = tensorrtllm_ensemble(
        "plain", llm=trt_llm(decoupled=False), tokenizer_dir="/engines/llama/tokenizer"
    )
    assert not not_decoupled.decoupled


def test_generate_compiles_against_the_tensorrtllm_ensemble() -> None:
    pool = gpu_pool(
        "h100",
        product="NVIDIA-H100-80GB-HBM3",
        cloud="gke",
        accelerator="nvidia-h100-80gb",
        gpus_per_pod=2,
    )
    made = tensorrtllm_ensemble(
        "llama",
        llm=trt_llm(gpus=2),
        tokenizer_dir="/engines/llama/tokenizer",
        preprocessing_versions=[1],
        postprocessing_versions=[1],
    )
    server = triton_serving("trt-triton", [made, *step_models(made)], pool=pool)

    @rtflow.pipeline(name="trt-chat")
    def chat(question: str) -> None:
        rtflow.generate(server, made, question, max_tokens=64, name="reply")

    bundle = compile_pipelines([chat.build()])
    (doc,) = [m.body for m in bundle.manifests if m.kind == "WorkflowTemplate"]
    (dag,) = [t for t in doc["spec"]["templates"] if "dag" in t]
    (task,) = [t for t in dag["dag"]["tasks"] if t["name"] == "reply"]
    (tensors,) = task["arguments"]["parameters"]
    assert '"max_tokens":[64]' in tensors["value"] and '"stream":[true]' in tensors["value"]
    paths = {f.path for f in bundle.files}
    assert "model-repository/llama/1/.gitkeep" in paths
    assert "model-repository/llama-preprocessing/config.pbtxt" in paths


def test_the_tensorrtllm_ensemble_refuses_what_does_not_fit() -> None:
    with pytest.raises(DefinitionError, match="is not a TensorRT-LLM model") as caught:
        tensorrtllm_ensemble(
            "x", llm=vllm_model("v", model="m", repository=REPO), tokenizer_dir="/t"
        )
    assert caught.value.field == "llm"
    with pytest.raises(DefinitionError, match="not an absolute path in the pod") as caught:
        tensorrtllm_ensemble("x", llm=trt_llm(), tokenizer_dir="tokenizer")
    assert caught.value.field == "tokenizer_dir"
    with pytest.raises(DefinitionError, match="add_special_tokens 'yes' is not a bool"):
        tensorrtllm_ensemble(
            "x",
            llm=trt_llm(),
            tokenizer_dir="/t",
            add_special_tokens="yes",  # type: ignore[arg-type]
        )


def test_an_environment_keeps_the_step_models_of_the_ensembles_it_loads() -> None:
    def define(models: list[str]) -> rtflow.Pipeline:
        @rtflow.pipeline(
            name="env-ensemble",
            environments=[rtflow.Environment("dev", models={pipelines.SERVER.name: models})],
        )
        def env_ensemble(question: str) -> None:
            rtflow.generate(pipelines.SERVER, SPELL, question, max_tokens=4)

        return env_ensemble

    kept = ["spell", "tokenizer", "generator", "detokenizer"]
    assert define(kept).build().environments[0].models == (
        ("ensemble-triton", tuple(sorted(kept))),
    )
    with pytest.raises(DefinitionError, match="model 'generator' is left out") as caught:
        define(["spell", "tokenizer", "detokenizer"]).build()
    assert "ensemble's step" in str(caught.value)
