"""Text tensors at compile time: the edge types of ``rtflow.infer`` inputs by Triton data type,
a ``str`` fed to a one-element text tensor, what compiles for the http and gRPC paths, and the
one-line errors (pipeline, stage, field, fix; exit 2 from the CLI).

The same pipelines run against a real Triton in tests/integration/test_triton_text.py."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from compiled import tasks, templates, workflow_template
from local_pipelines import text
from test_bad_definitions import compile_file, one_line

import rtflow
from rtflow import ir, stage_ir
from rtflow.errors import DefinitionError
from rtflow.gpu.models import triton_model
from rtflow.gpu.server import triton_serving
from rtflow.gpu.tensors import Tensor
from rtflow.gpu.text_tensors import TextDecodeError, decoded, text_problem
from rtflow.param_types import ParamType
from rtflow.stages import semantics
from rtflow.stages.inference import substitute

IMAGE = "ghcr.io/acme/tools:1.0"


@pytest.mark.parametrize(
    ("data_type", "item"),
    [
        ("TYPE_STRING", "str"),
        ("STRING", "str"),
        ("BYTES", "str"),
        ("str", "str"),
        ("TYPE_BOOL", "bool"),
        ("TYPE_INT64", "int"),
        ("TYPE_UINT8", "int"),
        ("TYPE_FP32", "float"),
        ("TYPE_FP16", "float"),
        ("TYPE_BF16", "float"),
    ],
)
def test_a_tensor_input_is_a_flat_list_of_its_element_type(data_type: str, item: str) -> None:
    model = triton_model(
        "m",
        backend="python",
        inputs=[Tensor("x", data_type, (2,))],
        outputs=[Tensor("y", "TYPE_FP32", (1,))],
        repository="pvc://m/x",
        versions=[1],
    )
    (param,) = stage_ir.tensor_params(model)
    assert param.type == ParamType("list", ParamType(item))  # type: ignore[arg-type]


def _stage(pipeline: rtflow.Pipeline, name: str) -> ir.Stage:
    return next(s for s in pipeline.build().stages if s.name == name)


def _task(pipeline: rtflow.Pipeline, name: str) -> ir.Task:
    return next(t for t in pipeline.build().tasks if t.name == name)


def _argo_arguments(pipeline: rtflow.Pipeline, task: str) -> dict[str, str]:
    found = tasks(workflow_template(pipeline))[task]
    return {p["name"]: p["value"] for p in found["arguments"]["parameters"]}


def test_a_str_input_feeds_a_one_element_text_tensor_quoted_by_argo() -> None:
    stage = _stage(text.text_http, "shout")
    assert stage.inference is not None
    body = json.loads(stage.inference.body.replace("{{inputs.parameters.text}}", '["x"]'))
    assert body["inputs"] == [{"name": "text", "shape": [1, 1], "datatype": "BYTES", "data": ["x"]}]
    assert _argo_arguments(text.text_http, "shout") == {
        "text": "[{{=toJson(workflow.parameters['message'])}}]"
    }


def test_the_grpc_path_packs_the_text_into_its_tensors_object() -> None:
    assert _argo_arguments(text.text_grpc, "shout") == {
        "tensors": "{\"text\":[{{=toJson(workflow.parameters['message'])}}]}"
    }


def test_a_stage_output_in_a_list_literal_depends_on_that_stage() -> None:
    task = _task(text.text_output, "shout")
    assert task.depends == ("greeting",)
    assert _argo_arguments(text.text_output, "shout") == {
        "text": "[{{=toJson(tasks['greeting'].outputs.parameters['result'])}}]"
    }


@pytest.mark.parametrize(
    "message",
    ['she said "hi"', "back\\slash", "new\nline", "a < b && c > d", "ünïcödé 日本", "", "\u2028"],
)
def test_the_local_run_builds_the_body_argo_would_and_triton_reads_the_text(message: str) -> None:
    """value_text (the task argument) then substitute (the http template): valid JSON whose
    data is exactly the message, with Go's escapes of <, > and &."""
    pipeline = text.text_http.build()
    task = pipeline.task("shout")
    (argument,) = [v for n, v in task.arguments if n == "text"]
    texts = semantics.value_text(argument, inputs={"message": message}, outputs={}, workflow={})
    stage = pipeline.stage("shout")
    assert stage.inference is not None
    body = substitute(stage.inference.body, {"text": texts})
    assert json.loads(body)["inputs"][0]["data"] == [message]
    assert "<" not in texts and ">" not in texts and "&" not in texts


def _one_line_error(pipeline: rtflow.Pipeline) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        pipeline.build()
    error = caught.value
    assert "\n" not in str(error)
    assert error.pipeline == pipeline.name
    assert error.fix
    return error


@rtflow.stage(image=IMAGE)
def token_ids(message: str) -> list[int]:
    return [len(message)]


@rtflow.stage(image=IMAGE)
def message_of(event: dict[str, Any]) -> str:
    return str(event["message"])


def test_ints_fed_to_a_text_tensor_are_refused_with_the_types() -> None:
    @rtflow.pipeline(name="ints-to-text")
    def p(message: str) -> None:
        rtflow.infer(text.SERVER, text.SHOUT, {"text": token_ids(message)}, name="shout")

    error = _one_line_error(p)
    assert (error.stage, error.field) == ("shout", "text")
    assert "input 'text' is list[str] but it is fed a list[int]" in error.problem


def test_one_str_fed_to_a_text_tensor_of_several_elements_says_how_many() -> None:
    pair = triton_model(
        "pair",
        backend="python",
        max_batch_size=4,
        inputs=[Tensor("text", "TYPE_STRING", (2,))],
        outputs=[Tensor("same", "TYPE_BOOL", (1,))],
        repository="pvc://m/x",
        versions=[1],
    )
    server = triton_serving("pair-triton", [pair], cpu="1", memory="1Gi")

    @rtflow.pipeline(name="one-for-two")
    def p(event: dict[str, Any]) -> None:
        rtflow.infer(server, pair, {"text": message_of(event)}, name="compare")

    error = _one_line_error(p)
    assert (error.stage, error.field) == ("compare", "text")
    assert "holds 2 elements (shape [1, 2]) but is fed one str" in error.problem
    assert "list[str]" in error.fix


def test_the_cli_refuses_ints_for_text_in_one_line_with_exit_2(tmp_path: Path) -> None:
    line = one_line(
        compile_file(
            tmp_path,
            """
            import rtflow
            from rtflow.gpu.models import triton_model
            from rtflow.gpu.server import triton_serving
            from rtflow.gpu.tensors import Tensor

            M = triton_model("shout", backend="python",
                             inputs=[Tensor("text", "TYPE_STRING", (1,))],
                             outputs=[Tensor("upper", "TYPE_STRING", (1,))],
                             repository="pvc://m/x", versions=[1])
            S = triton_serving("t", [M], cpu="1", memory="1Gi")

            @rtflow.pipeline(name="ints")
            def ints(ids: list[int]) -> None:
                rtflow.infer(S, M, {"text": ids}, name="shout")
            """,
        )
    )
    assert line.startswith("rtflow: error: pipeline 'ints', stage 'shout', field 'text': ")
    assert "list[str]" in line and "list[int]" in line


def test_the_http_step_of_a_text_model_posts_bytes_tensors() -> None:
    shout = templates(workflow_template(text.text_http))["shout"]
    assert '"datatype":"BYTES","data":{{inputs.parameters.text}}' in shout["http"]["body"]


# -- scored.output("name"): one output tensor, typed ---------------------------------------------


def test_a_picked_output_compiles_to_argo_s_expression_and_is_typed() -> None:
    arguments = _argo_arguments(text.text_pick, "summary")
    answer = "fromJSON(tasks['shout'].outputs.result)"
    assert arguments["upper"] == f"{{{{=toJson(find({answer}.outputs, .name == 'upper').data)}}}}"
    assert arguments["length"] == (
        f"{{{{=toJson(find({answer}.outputs, .name == 'length').data)}}}}"
    )
    assert _task(text.text_pick, "summary").depends == ("shout",)
    grpc = _argo_arguments(text.text_pick_grpc, "summary")
    assert "fromJSON(tasks['shout'].outputs.parameters['result'])" in grpc["upper"]


@rtflow.stage(image=IMAGE)
def wants_text(texts: list[str]) -> None:
    del texts


def test_a_picked_output_of_the_wrong_type_names_both_types() -> None:
    @rtflow.pipeline(name="pick-type")
    def p(message: str) -> None:
        shouted = rtflow.infer(text.SERVER, text.SHOUT, {"text": message}, name="shout")
        wants_text(texts=shouted.output("length"))

    error = _one_line_error(p)
    assert (error.stage, error.field) == ("wants-text", "texts")
    assert "input 'texts' is list[str] but it is fed a list[int]" in error.problem


def test_picking_an_output_the_model_does_not_declare_lists_its_outputs() -> None:
    @rtflow.pipeline(name="pick-name")
    def p(message: str) -> None:
        shouted = rtflow.infer(text.SERVER, text.SHOUT, {"text": message}, name="shout")
        wants_text(texts=shouted.output("uper"))

    error = _one_line_error(p)
    assert (error.stage, error.field) == ("wants-text", "texts")
    assert "model 'shout' has no output 'uper'" in error.problem
    assert "upper, length" in error.fix


def test_a_picked_output_sits_in_a_literal() -> None:
    @rtflow.pipeline(name="pick-literal")
    def p(message: str) -> None:
        shouted = rtflow.infer(text.SERVER, text.SHOUT, {"text": message}, name="shout")
        wants_text(texts=[message, "x"])
        payload_of(payload={"upper": shouted.output("upper"), "m": message})

    value = _argo_arguments(p, "payload-of")["payload"]
    assert value.startswith('{"m":{{=toJson(workflow.parameters[\'message\'])}},"upper":')
    assert value.endswith(".name == 'upper').data)}}}")


@rtflow.stage(image=IMAGE)
def payload_of(payload: dict[str, Any]) -> None:
    del payload


# -- the gRPC paths' text checks (gpu/text_tensors.py) -------------------------------------------


def test_text_elements_must_be_str_or_bytes() -> None:
    assert text_problem(SimpleNamespace(flat=["a", b"b"])) is None
    assert text_problem(SimpleNamespace(flat=["a", 5])) == "holds 5 (int), not text (str)"
    assert text_problem(SimpleNamespace(flat=[["a"]])) == "holds ['a'] (list), not text (str)"


def test_text_outputs_are_decoded_strictly() -> None:
    assert decoded([b"caf\xc3\xa9", "already"]) == ["café", "already"]
    with pytest.raises(TextDecodeError, match=r"element 1 is not UTF-8 text \(invalid start byte"):
        decoded([b"ok", b"\xff\xfe"])
