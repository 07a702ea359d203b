"""rtflow.infer: an Argo http step against Triton, with serving objects and model configs."""

from __future__ import annotations

import json
from typing import Any

import pytest
import strict_schema
from compiled import compile_docs, tasks, templates

import rtflow
from rtflow.errors import BundleError, DefinitionError
from rtflow.generators import bundle as bundle_module
from rtflow.generators.compiler import compile_pipelines
from rtflow.gpu import Tensor, gpu_pool, triton_model, triton_serving
from rtflow.gpu.kserve import SUCCESS_CONDITION, infer_request_template

IMAGE = "ghcr.io/acme/tools:1.0"
POOL = gpu_pool("t4", product="Tesla-T4")
SCORER = triton_model(
    "scorer",
    backend="python",
    inputs=[Tensor("x", "TYPE_FP32", (3,))],
    outputs=[Tensor("y", "TYPE_FP32", (1,))],
    max_batch_size=8,
    repository="pvc://models/scorer",
)
RAGGED = triton_model(
    "ragged",
    backend="python",
    inputs=[Tensor("tokens", "TYPE_INT64", (-1,))],
    outputs=[Tensor("y", "TYPE_FP32", (1,))],
    repository="pvc://models/ragged",
)
SERVER = triton_serving("scoring", [SCORER, RAGGED], pool=POOL)
OTHER = triton_serving("other", [RAGGED], pool=POOL)


@rtflow.stage(image=IMAGE)
def featurize(n: int) -> list[float]:
    return [float(n)] * 3


@rtflow.stage(image=IMAGE)
def read(answer: dict[str, Any]) -> float:
    return float(answer["outputs"][0]["data"][0])


@rtflow.stage(image=IMAGE)
def wants_text(text: str) -> None:
    del text


@rtflow.stage(image=IMAGE)
def tokens(n: int) -> list[int]:
    return list(range(n))


@rtflow.pipeline(name="scoring", namespace="ml")
def scoring(n: int) -> None:
    answer = rtflow.infer(SERVER, SCORER, {"x": featurize(n)}, timeout="3s")
    read(answer)


def test_the_step_is_an_http_template_with_the_kserve_body() -> None:
    (doc,) = [d for d in compile_docs(scoring) if d["kind"] == "WorkflowTemplate"]
    step = templates(doc)["infer-scorer"]
    assert "container" not in step
    http = step["http"]
    # The server runs in the pipeline's namespace (ml): called by its short name (#13).
    assert http["url"] == "http://scoring:8000/v2/models/scorer/infer"
    assert http["method"] == "POST"
    assert http["successCondition"] == SUCCESS_CONDITION
    assert http["timeoutSeconds"] == 3
    assert http["body"] == infer_request_template(
        SCORER, {"x": "{{inputs.parameters.x}}"}, {"x": [1, 3]}
    )
    filled = json.loads(http["body"].replace("{{inputs.parameters.x}}", "[1, 2, 3]"))
    assert filled["inputs"][0] == {
        "name": "x",
        "shape": [1, 3],
        "datatype": "FP32",
        "data": [1, 2, 3],
    }
    assert step["retryStrategy"]["retryPolicy"] == "Always"
    assert step["inputs"]["parameters"] == [{"name": "x"}]


def test_downstream_stages_read_the_response_body() -> None:
    (doc,) = [d for d in compile_docs(scoring) if d["kind"] == "WorkflowTemplate"]
    read_args = tasks(doc)["read"]["arguments"]["parameters"]
    assert read_args == [{"name": "answer", "value": "{{tasks.infer-scorer.outputs.result}}"}]
    assert tasks(doc)["infer-scorer"]["depends"] == "featurize"


def test_serving_objects_and_model_configs_are_emitted() -> None:
    bundle = compile_pipelines([scoring.build()])
    kinds = sorted(m.kind for m in bundle.manifests)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        assert kind in kinds
    paths = sorted(f.path for f in bundle.files)
    assert paths == [
        "README.md",
        "model-repository/ragged/config.pbtxt",
        "model-repository/scorer/config.pbtxt",
    ]
    deployment = next(m.body for m in bundle.manifests if m.kind == "Deployment")
    limits = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] in (1, "1")
    for m in bundle.manifests:
        assert strict_schema.errors_any(m.body) == [], m.filename


def test_the_output_type_is_checked_like_any_other() -> None:
    @rtflow.pipeline(name="typed")
    def typed(n: int) -> None:
        wants_text(rtflow.infer(SERVER, SCORER, {"x": featurize(n)}))

    with pytest.raises(DefinitionError, match="is str but it is fed a dict"):
        typed.build()


def test_a_model_the_server_does_not_serve() -> None:
    @rtflow.pipeline(name="wrong-server")
    def wrong(n: int) -> None:
        rtflow.infer(OTHER, SCORER, {"x": featurize(n)})

    with pytest.raises(DefinitionError) as caught:
        wrong.build()
    assert caught.value.field == "model" and caught.value.stage == "infer-scorer"
    assert "does not serve model 'scorer'" in str(caught.value)


def test_an_input_tensor_the_model_does_not_have() -> None:
    @rtflow.pipeline(name="wrong-input")
    def wrong(n: int) -> None:
        rtflow.infer(SERVER, SCORER, {"z": featurize(n)})

    with pytest.raises(DefinitionError) as caught:
        wrong.build()
    assert "'z'" in str(caught.value)


def test_variable_dims_need_a_shape() -> None:
    @rtflow.pipeline(name="ragged")
    def ragged(n: int) -> None:
        rtflow.infer(SERVER, "ragged", {"tokens": tokens(n)})

    with pytest.raises(DefinitionError, match="variable dimension"):
        ragged.build()

    @rtflow.pipeline(name="ragged-ok")
    def shaped(n: int) -> None:
        rtflow.infer(SERVER, "ragged", {"tokens": tokens(n)}, shapes={"tokens": [16]})

    (doc,) = [d for d in compile_docs(shaped) if d["kind"] == "WorkflowTemplate"]
    assert '"shape":[16]' in templates(doc)["infer-ragged"]["http"]["body"]


def test_the_bundle_checks_the_step_reaches_a_serving_triton() -> None:
    bundle = compile_pipelines([scoring.build()])
    broken = []
    for m in bundle.manifests:
        body = json.loads(json.dumps(m.body))
        if m.kind == "Deployment":
            args = body["spec"]["template"]["spec"]["containers"][0]["args"]
            body["spec"]["template"]["spec"]["containers"][0]["args"] = [
                a for a in args if a != "--load-model=scorer"
            ]
        broken.append(bundle_module.Manifest(m.pipeline, body))
    with pytest.raises(BundleError, match="does not load model 'scorer'"):
        bundle_module.check(bundle_module.Bundle(tuple(broken)))


@rtflow.pipeline(name="scoring-grpc", namespace="ml")
def scoring_grpc(n: int) -> None:
    answer = rtflow.infer(SERVER, SCORER, {"x": featurize(n)}, via="grpc", timeout="3s")
    read(answer)


def test_via_grpc_is_a_container_step_running_the_client_stage() -> None:
    (doc,) = [d for d in compile_docs(scoring_grpc) if d["kind"] == "WorkflowTemplate"]
    step = templates(doc)["infer-scorer"]
    assert "http" not in step
    args = step["container"]["args"]
    assert args[:2] == ["run", "rtflow.stages.builtin.triton_client:triton_infer"]
    declared = {p["name"]: p.get("default") for p in step["inputs"]["parameters"]}
    assert declared == {
        "url": "scoring:8001",
        "model": "scorer",
        "tensors": None,
        "timeout_seconds": "3.0",
    }
    (tensors,) = tasks(doc)["infer-scorer"]["arguments"]["parameters"]
    assert tensors == {
        "name": "tensors",
        "value": '{"x":{{tasks.featurize.outputs.parameters.result}}}',
    }
    read_args = tasks(doc)["read"]["arguments"]["parameters"]
    assert read_args == [
        {"name": "answer", "value": "{{tasks.infer-scorer.outputs.parameters.result}}"}
    ]
    assert strict_schema.errors(doc) == []


def test_the_workflow_identity_may_run_the_argo_agent_for_http_steps() -> None:
    # Argo runs http templates in an agent pod under the workflow's service account; without
    # these grants the step hangs in Pending (Argo's documented minimum agent role).
    roles = {
        m.name: m.body["rules"]
        for m in compile_pipelines([scoring.build()]).manifests
        if m.kind == "Role"
    }
    rules = roles["scoring-workflow"]
    assert {
        "apiGroups": ["argoproj.io"],
        "resources": ["workflowtasksets"],
        "verbs": ["list", "watch"],
    } in rules
    assert {
        "apiGroups": ["argoproj.io"],
        "resources": ["workflowtasksets/status"],
        "verbs": ["patch"],
    } in rules


def test_the_agent_gets_the_token_secret_it_mounts() -> None:
    # The controller mounts <serviceaccount>.service-account-token into the agent pod itself;
    # since Kubernetes 1.24 nobody creates that Secret, so without it the agent pod never
    # starts and the http step waits forever (seen on the real controller, execution tier).
    manifests = compile_pipelines([scoring.build()]).manifests
    (secret,) = [m.body for m in manifests if m.kind == "Secret"]
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret["metadata"]["name"] == "scoring-workflow.service-account-token"
    assert secret["metadata"]["annotations"] == {
        "argocd.argoproj.io/sync-wave": "1",
        "kubernetes.io/service-account.name": "scoring-workflow",
    }
    assert "data" not in secret and "stringData" not in secret  # the token controller fills it
