"""Argo's own substitution decides what a literal or a text tensor's argument becomes.

A list or dict literal holding outputs, and a ``str`` fed to a text tensor, compile to task
arguments that Argo assembles at run time (``[{{tasks.x.outputs.parameters.result}},2.0]``,
``{{=toJson(workflow.parameters['message'])}}``). The local run copies that in
``rtflow.stages.semantics.value_text``. Here the original runs: Argo Workflows' util/template
(v4.1.4, the release rtflow pins), built from the Go module cache with tools/argo-lint's pins,
substitutes the compiled arguments as the controller's dag.go does, and must give the very
bytes the local run gives, JSON that parses back to the values sent, whatever the text holds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from local_pipelines import literals, text

from rtflow import ir
from rtflow.generators import argo_expressions
from rtflow.stages import semantics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "tests" / "fixtures" / "argo_replace" / "main.go"
PINS = ROOT / "tools" / "argo-lint"

TEXTS = [
    "hello",
    'she said "hi"',
    "back \\ slash",
    "new\nline\ttab\r",
    "<b>&amp;</b>",
    "ünïcödé 日本 🙂",
    "\u2028\u2029",
    "",
    "{{workflow.name}}",
]


class ArgoReplace:
    def __init__(self, binary: Path) -> None:
        self.process = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def __call__(self, value: str, params: Mapping[str, str]) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"value": value, "params": dict(params)}) + "\n")
        self.process.stdin.flush()
        answer = json.loads(self.process.stdout.readline())
        assert "error" not in answer, answer["error"]
        return str(answer["value"])

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def argo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ArgoReplace]:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        component_missing("go is needed to build Argo's template substitution")
    folder = tmp_path_factory.mktemp("argo-replace")
    shutil.copy(SOURCE, folder / "main.go")
    module = (
        (PINS / "go.mod").read_text().replace("module rtflow/tools/argo-lint", "module argoreplace")
    )
    (folder / "go.mod").write_text(module)
    shutil.copy(PINS / "go.sum", folder / "go.sum")
    # Only the module cache tools/provision.sh filled: a test fetches nothing.
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOPROXY": "off", "GOTOOLCHAIN": "local"}
    built = subprocess.run(
        [go, "build", "-o", "argo-replace", "."],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if built.returncode != 0:
        component_missing(
            "Argo's util/template could not be built from the module cache (run "
            f"tools/provision.sh): {built.stderr.strip().splitlines()[-1:]}"
        )
    replace = ArgoReplace(folder / "argo-replace")
    yield replace
    replace.close()


def _argo_params(
    inputs: Mapping[str, str], outputs: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """The controller's scope: global workflow parameters and the finished tasks' outputs."""
    params = {f"workflow.parameters.{k}": v for k, v in inputs.items()}
    for task, values in outputs.items():
        for name, value in values.items():
            params[f"tasks.{task}.outputs.parameters.{name}"] = value
    return params


def _same(
    argo: ArgoReplace,
    value: ir.Value,
    inputs: Mapping[str, str],
    outputs: Mapping[str, Mapping[str, str]],
) -> Any:
    compiled = argo_expressions.value(value)
    by_argo = argo(compiled, _argo_params(inputs, outputs))
    local = semantics.value_text(value, inputs=inputs, outputs=outputs, workflow={})
    assert by_argo == local, (compiled, by_argo, local)
    return json.loads(by_argo)


def _argument(pipeline: ir.Pipeline, task: str, name: str) -> ir.Value:
    (value,) = [v for n, v in pipeline.task(task).arguments if n == name]
    return value


@pytest.mark.parametrize("message", TEXTS)
def test_a_str_fed_to_a_text_tensor_is_the_json_argo_writes(
    argo: ArgoReplace, message: str
) -> None:
    http = _argument(text.text_http.build(), "shout", "text")
    assert _same(argo, http, {"message": message}, {}) == [message]
    grpc = _argument(text.text_grpc.build(), "shout", "tensors")
    assert _same(argo, grpc, {"message": message}, {}) == {"text": [message]}
    output = _argument(text.text_output.build(), "shout", "text")
    assert _same(argo, output, {}, {"greeting": {"result": message}}) == [message]


@pytest.mark.parametrize("user", TEXTS)
def test_list_and_dict_literals_are_the_json_argo_writes(argo: ArgoReplace, user: str) -> None:
    pipeline = literals.literals.build()
    outputs = {
        "rank": {"result": "2.5"},
        "score": {"result": "0.5"},
        "shout": {"result": user.upper()},
    }
    inputs = {"user": user, "weight": "3"}
    assert _same(argo, _argument(pipeline, "rank", "scored"), inputs, outputs) == [0.5, 2.0, 3]
    assert _same(argo, _argument(pipeline, "envelope", "payload"), inputs, outputs) == {
        "best": 2.5,
        "nested": {"both": [0.5, 3], "loud": user.upper()},
        "u": user,
    }
    assert _same(argo, _argument(pipeline, "envelope", "names"), inputs, outputs) == [
        user,
        user.upper(),
        "plain",
    ]


ANSWER = {
    "model_name": "shout",
    "model_version": "1",
    "outputs": [
        {"name": "upper", "datatype": "BYTES", "shape": [1, len(TEXTS)], "data": TEXTS},
        {"name": "length", "datatype": "INT64", "shape": [1, 3], "data": [5, -1, 2**63 - 1]},
        {
            "name": "risk",
            "datatype": "FP32",
            "shape": [1, 6],
            "data": [0.9300000071525574, 1e-07, 1.5e21, 0.0, -2.5, 123456.0],
        },
        {"name": "flags", "datatype": "BOOL", "shape": [1, 2], "data": [True, False]},
    ],
}


@pytest.mark.parametrize("tensor", ["upper", "length", "risk", "flags"])
@pytest.mark.parametrize("via", ["http", "grpc"])
def test_a_picked_output_is_the_json_argo_writes(argo: ArgoReplace, tensor: str, via: str) -> None:
    """``scored.output(name)``: Argo's expr (fromJSON, find, toJson) against the local copy,
    byte for byte; numbers pass through float64 as in the cluster (an int64 past 2**53 is
    rounded: documented)."""
    answer = ir.TaskOutput("shout", "response", result=True)
    key = "tasks.shout.outputs.result"
    if via == "grpc":
        answer = ir.TaskOutput("shout", "result")
        key = "tasks.shout.outputs.parameters.result"
    value = ir.TensorData(answer, tensor)
    text = json.dumps(ANSWER)
    compiled = argo_expressions.value(value)
    by_argo = argo(compiled, {key: text})
    local = semantics.value_text(
        value, inputs={}, outputs={"shout": {answer.output: text}}, workflow={}
    )
    assert by_argo == local, (compiled, by_argo, local)
    (declared,) = [o["data"] for o in ANSWER["outputs"] if o["name"] == tensor]  # type: ignore[union-attr]
    if tensor in ("upper", "flags"):
        assert json.loads(by_argo) == declared
    else:
        assert json.loads(by_argo) == pytest.approx([float(v) for v in declared], rel=1e-15)
