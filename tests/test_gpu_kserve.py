"""The KServe v2 request path: exact bodies, the Argo body template, response parsing."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtflow.errors import DefinitionError
from rtflow.gpu.kserve import (
    KSERVE_DATATYPES,
    InferenceError,
    encode_request,
    flatten,
    infer_path,
    infer_request,
    infer_request_template,
    parse_infer_response,
)
from rtflow.gpu.models import TritonModel, triton_model
from rtflow.gpu.tensors import DATA_TYPES

SCORER = triton_model(
    "fraud-scorer",
    backend="python",
    inputs=[("features", "FP32", [5])],
    outputs=[("risk", "FP32", [1])],
    repository="pvc://models",
    max_batch_size=64,
)
ROWS = [[5.3, 1.0, 0.0, 1.0, 0.0], [2.0, 0.0, 1.0, 0.0, 1.0]]

MIXED = triton_model(
    "mixed",
    backend="python",
    inputs=[
        ("tokens", "INT64", [-1]),
        ("mask", "BOOL", [-1]),
        ("text", "STRING", [1]),
        ("scale", "FP64", [2, 2]),
    ],
    outputs=[("y", "FP32", [1]), ("label", "BYTES", [1])],
    repository="pvc://models",
)


def test_exact_body_for_the_fraud_scorer() -> None:
    body = infer_request(SCORER, {"features": ROWS})
    assert body == {
        "inputs": [
            {
                "name": "features",
                "shape": [2, 5],
                "datatype": "FP32",
                "data": [5.3, 1.0, 0.0, 1.0, 0.0, 2.0, 0.0, 1.0, 0.0, 1.0],
            }
        ],
        "outputs": [{"name": "risk"}],
    }
    assert encode_request(body) == (
        b'{"inputs":[{"name":"features","shape":[2,5],"datatype":"FP32",'
        b'"data":[5.3,1.0,0.0,1.0,0.0,2.0,0.0,1.0,0.0,1.0]}],"outputs":[{"name":"risk"}]}'
    )
    assert infer_path(SCORER) == "/v2/models/fraud-scorer/infer"
    assert infer_path(SCORER, 2) == "/v2/models/fraud-scorer/versions/2/infer"


def test_numpy_inputs_and_request_id() -> None:
    body = infer_request(SCORER, {"features": np.array(ROWS, dtype=np.float64)}, request_id="r1")
    assert body["id"] == "r1"
    assert body["inputs"][0]["data"][0] == 5.3


def test_unbatched_model_with_several_types_in_declared_order() -> None:
    values = {
        "scale": [[1, 2.5], [3, 4]],
        "text": ["héllo"],
        "mask": [True, False, True],
        "tokens": [101, 2023, 102],
    }
    body = infer_request(MIXED, values, outputs=["label"])
    assert [(t["name"], t["shape"], t["datatype"]) for t in body["inputs"]] == [
        ("tokens", [3], "INT64"),
        ("mask", [3], "BOOL"),
        ("text", [1], "BYTES"),
        ("scale", [2, 2], "FP64"),
    ]
    assert body["inputs"][3]["data"] == [1, 2.5, 3, 4]
    assert body["outputs"] == [{"name": "label"}]
    assert json.loads(encode_request(body)) == body


def test_every_triton_type_has_a_kserve_datatype() -> None:
    assert set(KSERVE_DATATYPES) == set(DATA_TYPES)
    assert KSERVE_DATATYPES["TYPE_STRING"] == "BYTES"
    assert all(
        v == k.removeprefix("TYPE_") for k, v in KSERVE_DATATYPES.items() if k != "TYPE_STRING"
    )


def test_body_template_for_the_argo_http_step() -> None:
    text = infer_request_template(
        SCORER, {"features": "{{inputs.parameters.features}}"}, {"features": [1, 5]}
    )
    assert text == (
        '{"inputs":[{"name":"features","shape":[1,5],"datatype":"FP32",'
        '"data":{{inputs.parameters.features}}}],"outputs":[{"name":"risk"}]}'
    )
    filled = text.replace("{{inputs.parameters.features}}", json.dumps(ROWS[0]))
    assert json.loads(filled) == infer_request(SCORER, {"features": [ROWS[0]]})


def test_parse_response_into_named_outputs() -> None:
    response = {
        "model_name": "mixed",
        "outputs": [
            {"name": "y", "datatype": "FP32", "shape": [1], "data": [0.25]},
            {"name": "label", "datatype": "BYTES", "shape": [1], "data": ["fraud"]},
        ],
    }
    outputs = parse_infer_response(MIXED, json.dumps(response).encode())
    assert outputs["y"].data == (0.25,)
    assert outputs["label"].nested() == ["fraud"]
    batched = parse_infer_response(
        SCORER,
        {"outputs": [{"name": "risk", "datatype": "FP32", "shape": [2, 1], "data": [0.1, 0.9]}]},
    )
    assert batched["risk"].rows() == [[0.1], [0.9]]
    assert batched["risk"].shape == (2, 1)


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ({"error": "unexpected inference input 'x'"}, "Triton answered: unexpected"),
        ({"outputs": [{"name": "z", "datatype": "FP32", "shape": [1], "data": [1]}]}, "'z'"),
        ({"outputs": [{"name": "risk", "datatype": "FP64", "shape": [1], "data": [1]}]}, "FP64"),
        ({"outputs": [{"name": "risk", "datatype": "FP32", "shape": [2, 1], "data": [1]}]}, "fill"),
        ({"model_name": "x"}, "no outputs"),
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
    ],
)
def test_bad_responses(response: Any, message: str) -> None:
    with pytest.raises(InferenceError, match=message):
        parse_infer_response(SCORER, response)


@pytest.mark.parametrize(
    ("model", "inputs", "field", "message"),
    [
        (SCORER, {"feature": ROWS}, "inputs.feature", "has no input 'feature'"),
        (SCORER, {}, "inputs.features", "input 'features' is missing"),
        (SCORER, {"features": [[1.0, 2.0]]}, "inputs.features", "shape [1, 2]"),
        (SCORER, {"features": [1.0, 2.0, 3.0, 4.0, 5.0]}, "inputs.features", "batch<=64, 5"),
        (SCORER, {"features": [[0.0] * 5] * 65}, "inputs.features", "shape [65, 5]"),
        (SCORER, {"features": [["a", 0, 0, 0, 0]]}, "inputs.features", "is FP32, but holds 'a'"),
        (SCORER, {"features": [[True, 0, 0, 0, 0]]}, "inputs.features", "holds True"),
        (SCORER, {"features": [[math.nan, 0, 0, 0, 0]]}, "inputs.features", "holds nan"),
        (SCORER, {"features": [[1e39, 0, 0, 0, 0]]}, "inputs.features", "holds 1e+39"),
        (SCORER, {"features": [[0.0] * 5, [0.0] * 4]}, "inputs.features", "ragged"),
        (SCORER, {"features": 1.0}, "inputs.features", "scalar"),
        (
            MIXED,
            {"tokens": [1.5], "mask": [True], "text": ["a"], "scale": [[1, 1], [1, 1]]},
            "inputs.tokens",
            "INT64",
        ),
        (
            MIXED,
            {"tokens": [1], "mask": [1], "text": ["a"], "scale": [[1, 1], [1, 1]]},
            "inputs.mask",
            "BOOL",
        ),
        (
            MIXED,
            {"tokens": [1], "mask": [True], "text": [b"a"], "scale": [[1, 1], [1, 1]]},
            "inputs.text",
            "BYTES",
        ),
        (
            MIXED,
            {"tokens": [1], "mask": [True], "text": ["a", "b"], "scale": [[1, 1], [1, 1]]},
            "inputs.text",
            "shape [2]",
        ),
    ],
)
def test_inputs_that_do_not_match_the_declaration(
    model: TritonModel, inputs: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(DefinitionError) as info:
        infer_request(model, inputs, stage="score")
    error = info.value
    assert error.field == field
    assert message in str(error)
    assert "\n" not in str(error)
    assert str(error).startswith(f"stage 'score', field {field!r}: model {model.name!r}")


def test_int_ranges() -> None:
    small = triton_model(
        "small",
        backend="python",
        inputs=[("x", "INT8", [1]), ("u", "UINT8", [1])],
        outputs=[("y", "INT8", [1])],
        repository="pvc://m",
    )
    infer_request(small, {"x": [-128], "u": [255]})
    with pytest.raises(DefinitionError, match="holds 128"):
        infer_request(small, {"x": [128], "u": [0]})
    with pytest.raises(DefinitionError, match="holds -1"):
        infer_request(small, {"x": [0], "u": [-1]})


def test_unknown_output_and_template_errors() -> None:
    with pytest.raises(DefinitionError, match="has no output 'score'") as info:
        infer_request(SCORER, {"features": ROWS}, outputs=["score"])
    assert info.value.field == "outputs.score"
    with pytest.raises(DefinitionError, match="has no shape"):
        infer_request_template(SCORER, {"features": "{{x}}"}, {})
    with pytest.raises(DefinitionError, match=r"shape \[1, 4\]"):
        infer_request_template(SCORER, {"features": "{{x}}"}, {"features": [1, 4]})


@st.composite
def tensors(draw: st.DrawFn) -> tuple[list[int], Any]:
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4))
    count = math.prod(shape)
    flat = draw(st.lists(st.floats(-1e6, 1e6, width=32), min_size=count, max_size=count))
    nested: Any = flat
    for size in reversed(shape[1:]):
        nested = [nested[i : i + size] for i in range(0, len(nested), size)]
    return shape, nested


@settings(max_examples=200, deadline=None)
@given(tensors())
def test_bodies_flatten_row_major_and_parse_back(case: tuple[list[int], Any]) -> None:
    shape, nested = case
    dims = [-1] * (len(shape) - 1) if len(shape) > 1 else [-1]
    model = triton_model(
        "p",
        backend="python",
        inputs=[("x", "FP32", dims)],
        outputs=[("x_out", "FP32", dims)],
        repository="pvc://m",
        max_batch_size=4 if len(shape) > 1 else 0,
    )
    body = infer_request(model, {"x": nested})
    [tensor] = body["inputs"]
    assert tensor["shape"] == shape
    assert tensor["data"] == np.array(nested, dtype=np.float64).reshape(-1).tolist()
    assert flatten(nested) == (shape, tensor["data"])
    echoed = {"outputs": [{**tensor, "name": "x_out"}]}
    assert parse_infer_response(model, echoed)["x_out"].nested() == nested
