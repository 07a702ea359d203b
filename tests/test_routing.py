"""``rtflow.route`` compiled (a ``when`` per route over http steps; a stage per model on the
stream plane), its bad definitions, and the response caches' declarations (Triton's config
and server flag, the stream workers' answer cache)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import strict_schema
from compiled import ROOT, compile_docs, tasks, templates
from local_pipelines import routing

import rtflow
from rtflow.errors import DefinitionError
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import render_stream
from rtflow.gpu.config import render_config
from rtflow.gpu.llm import vllm_model
from rtflow.gpu.models import triton_model
from rtflow.gpu.response_cache import CACHE_BYTES
from rtflow.gpu.server import triton_serving
from rtflow.gpu.server_pod import triton_args
from rtflow.gpu.tensors import Tensor
from rtflow.stages.stream.plan import Plan
from rtflow.stages.stream.steps import InferenceStep

PREMIUM = "'{{workflow.parameters.tier}}' == 'premium'"


def test_each_route_is_an_http_step_under_its_when_and_the_reader_under_the_same() -> None:
    doc = compile_docs(routing.routed)
    (template,) = [d for d in doc if d["kind"] == "WorkflowTemplate"]
    steps = tasks(template)
    assert steps["score-large"]["when"] == PREMIUM
    assert steps["score-small"]["when"] == f"!({PREMIUM})"
    assert steps["answered"]["when"] == PREMIUM and steps["answered"]["depends"] == "score-large"
    assert steps["answered-2"]["when"] == f"!({PREMIUM})"
    assert steps["answered-2"]["depends"] == "score-small"
    urls = {
        name: templates(template)[steps[name]["template"]]["http"]["url"]
        for name in ("score-large", "score-small")
    }
    assert urls["score-large"].endswith("/v2/models/large/infer")
    assert urls["score-small"].endswith("/v2/models/small/infer")
    assert strict_schema.errors(template) == []
    for document in doc:
        assert strict_schema.errors_any(document) == [], document["kind"]


@pytest.mark.parametrize("pipeline", [routing.routed, routing.routed_stream])
def test_compiling_twice_is_byte_identical(pipeline: rtflow.Pipeline) -> None:
    first = render_stream(compile_pipelines([pipeline.build()]))
    assert render_stream(compile_pipelines([pipeline.build()])) == first


def test_the_stream_plane_has_one_inference_stage_per_model_each_with_its_batcher_model() -> None:
    plan = Plan(routing.routed_stream.build())
    steps = {s.task.name: s for s in plan.steps if isinstance(s, InferenceStep)}
    assert sorted(steps) == ["score-large", "score-small"]
    assert {n: s.stage.inference.model for n, s in steps.items() if s.stage.inference} == {
        "score-large": "large",
        "score-small": "small",
    }


def _build(routes: Any, **kwargs: Any) -> None:
    @rtflow.pipeline(name="bad-route")
    def bad(amount: float, tier: str) -> None:
        rtflow.route(
            routing.SERVER,
            routes(tier) if callable(routes) else routes,
            inputs={"features": [amount, 1.0]},
            name="score",
            **kwargs,
        )

    bad.build()


OTHER = routing.scorer("other")
TEXT = triton_model(
    "text-scorer",
    backend="python",
    max_batch_size=8,
    inputs=[Tensor("features", "TYPE_FP32", (3,))],
    outputs=[Tensor("which", "TYPE_INT64", (1,))],
    repository="pvc://triton-models/routes",
)
MIXED = triton_serving("mixed-triton", [routing.SMALL, TEXT], cpu="1", memory="1Gi")


@pytest.mark.parametrize(
    ("routes", "kwargs", "field", "words"),
    [
        (lambda t: {"medium": t == "x"}, {"default": "small"}, "routes[medium]", "serves no model"),
        (lambda t: {OTHER: t == "x"}, {"default": "small"}, "routes[other]", "not served by"),
        (lambda t: {"small": t == "x"}, {"default": "small"}, "routes[small]", "routed to twice"),
        (lambda t: {"small": t == "x"}, {}, "routes", "chooses among one model"),
        (lambda t: {"large": True}, {"default": "small"}, "when", "is not a condition"),
    ],
    ids=["unknown-model", "another-server", "twice", "one-model", "not-a-condition"],
)
def test_bad_routes_are_one_line_definition_errors(
    routes: Any, kwargs: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(DefinitionError) as caught:
        _build(routes, **kwargs)
    assert caught.value.field == field and words in caught.value.problem, caught.value.line()
    assert "\n" not in caught.value.line()


def test_routed_models_must_take_the_same_tensors() -> None:
    @rtflow.pipeline(name="mixed")
    def mixed(amount: float, tier: str) -> None:
        rtflow.route(
            MIXED,
            {TEXT: tier == "x"},
            default=routing.SMALL,
            inputs={"features": [amount, 1.0]},
        )

    with pytest.raises(DefinitionError) as caught:
        mixed.build()
    assert caught.value.field == "routes[small]" and caught.value.stage == "route"
    assert "input 'features' is TYPE_FP32 [2] but 'text-scorer''s is TYPE_FP32 [3]" in str(
        caught.value
    )


def test_the_cli_exits_2_with_the_line_naming_pipeline_stage_field_and_fix(tmp_path: Path) -> None:
    path = tmp_path / "bad_route.py"
    path.write_text(
        textwrap.dedent(
            f"""
            import sys
            sys.path.insert(0, {str(ROOT / "tests")!r})
            import rtflow
            from local_pipelines.routing import SERVER

            @rtflow.pipeline(name="bad-route")
            def bad(amount: float, tier: str) -> None:
                rtflow.route(SERVER, {{"medium": tier == "x"}}, default="small",
                             inputs={{"features": [amount, 1.0]}}, name="score")
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "compile", str(path), "-o", "-"],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert "pipeline 'bad-route'" in line and "stage 'score'" in line
    assert "field 'routes[medium]'" in line and "route to models the server serves" in line


# -- response caching ----------------------------------------------------------------------------


def test_the_response_cache_is_in_the_config_and_the_server_starts_its_cache() -> None:
    assert "response_cache { enable: true }\n" in render_config(routing.SMALL)
    plain = routing.scorer("plain")
    assert "response_cache" not in render_config(
        triton_model(
            "plain",
            backend="python",
            max_batch_size=8,
            inputs=plain.inputs,
            outputs=plain.outputs,
            repository="pvc://triton-models/routes",
        )
    )
    assert f"--cache-config=local,size={CACHE_BYTES}" in triton_args(routing.SERVER, ["/models"])
    uncached = triton_serving("uncached", [TEXT], cpu="1", memory="1Gi")
    assert not any(a.startswith("--cache-config") for a in triton_args(uncached, ["/models"]))


def test_the_deployment_carries_the_cache_flag_and_passes_the_strict_schemas() -> None:
    docs = compile_docs(routing.routed)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--cache-config=local,size={CACHE_BYTES}" in args
    assert strict_schema.errors_any(deployment) == []


def test_a_decoupled_model_cannot_cache() -> None:
    common: dict[str, Any] = {
        "backend": "python",
        "inputs": [Tensor("text_input", "TYPE_STRING", (1,))],
        "outputs": [Tensor("text_output", "TYPE_STRING", (1,))],
        "repository": "pvc://triton-models/llm",
        "decoupled": True,
    }
    with pytest.raises(DefinitionError) as caught:
        triton_model("streamer", response_cache=True, **common)
    assert caught.value.field == "response_cache"
    assert "does not support decoupled models" in caught.value.problem
    with pytest.raises(DefinitionError) as caught:
        triton_model("streamer", client_cache=10, **common)
    assert caught.value.field == "client_cache"
    # vLLM's model is decoupled: it never asks for the cache
    chat = vllm_model("chat", model="m", repository="pvc://triton-models/llm")
    assert not chat.response_cache and "response_cache" not in render_config(chat)


@pytest.mark.parametrize("value", [-1, 1.5, True, 10**9])
def test_the_client_cache_is_a_number_of_entries(value: object) -> None:
    with pytest.raises(DefinitionError, match="client_cache") as caught:
        triton_model(
            "x",
            backend="python",
            max_batch_size=8,
            inputs=[Tensor("features", "TYPE_FP32", (2,))],
            outputs=[Tensor("which", "TYPE_INT64", (1,))],
            repository="pvc://triton-models/routes",
            client_cache=value,  # type: ignore[arg-type]
        )
    assert caught.value.field == "client_cache"
