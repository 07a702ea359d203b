"""Generated model repositories in a real Triton server (the nvidia-pytriton wheel's, on CPU).

The fraud scorer's repository is written by rtflow (config.pbtxt from the generator, model.py
from examples/models) and served with the same model-control flags the Deployment uses; the
requests are the exact bytes the Argo ``http`` step would send. One server for the module.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import struct
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from components import component_missing

from rtflow.gpu import triton_server as ts
from rtflow.gpu.client import TritonGrpcClient
from rtflow.gpu.config import render_config, write_repository
from rtflow.gpu.kserve import encode_request, infer_path, infer_request, parse_infer_response
from rtflow.gpu.models import TritonModel, triton_model
from rtflow.gpu.serving import TRITON_METRICS, triton_args, triton_serving
from rtflow.gpu.triton_server import TritonServer, TritonUnavailable

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "models"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "fraud_scorer_example", EXAMPLES / "fraud_scorer.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()
SCORER: TritonModel = example.FRAUD_SCORER

# A model of every awkward KServe datatype, to check the body's datatype mapping end to end.
TYPES = triton_model(
    "types",
    backend="python",
    inputs=[("tokens", "INT64", [-1]), ("mask", "BOOL", [-1]), ("text", "STRING", [1])],
    outputs=[("kept", "INT64", [1]), ("shout", "STRING", [1])],
    repository="pvc://test",
    versions={1: "types/1"},
)
TYPES_PY = """\
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            tokens = pb_utils.get_input_tensor_by_name(request, "tokens").as_numpy()
            mask = pb_utils.get_input_tensor_by_name(request, "mask").as_numpy()
            text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
            kept = np.array([int(tokens[mask].sum())], dtype=np.int64)
            shout = np.array([text[0].decode().upper().encode()], dtype=np.object_)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor("kept", kept), pb_utils.Tensor("shout", shout)]
                )
            )
        return responses
"""

# Transactions as (amount, foreign, night, card_not_present, new_merchant): the features in the
# order the model takes them, log_amount = log1p(amount).
TRANSACTIONS = [
    (12.5, 0.0, 0.0, 0.0, 0.0),
    (980.0, 1.0, 1.0, 1.0, 1.0),
    (250.0, 1.0, 0.0, 1.0, 0.0),
    (4999.99, 0.0, 1.0, 1.0, 1.0),
]


def f32(x: float) -> float:
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


def features(amount: float, *flags: float) -> list[float]:
    return [math.log1p(amount), *flags]


def expected_risk(row: list[float]) -> float:
    """The logistic score by plain math, from the float32 values Triton actually receives."""
    z = example.BIAS + sum(w * f32(x) for w, x in zip(example.WEIGHTS, row, strict=True))
    return 1.0 / (1.0 + math.exp(-z))


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with _OPENER.open(request, timeout=30) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), exc.read()


def get_json(url: str) -> Any:
    with _OPENER.open(url, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("sources")
    (base / "types" / "1").mkdir(parents=True)
    (base / "types" / "1" / "model.py").write_text(TYPES_PY)
    repo = tmp_path_factory.mktemp("repo")
    write_repository([SCORER], repo, base=example.HERE, cpu_only=True)
    write_repository([TYPES], repo, base=base, cpu_only=True)
    return repo


@pytest.fixture(scope="module")
def server(repository: Path) -> Iterator[TritonServer]:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except TritonUnavailable as exc:
        component_missing(str(exc))
    # The model-control flags of the generated Deployment: load exactly the declared models.
    serving = triton_serving("local", [SCORER, TYPES], pool=example.POOL)
    cluster_args = triton_args(serving, ["/models"])
    assert "--model-control-mode=explicit" in cluster_args
    assert "--disable-auto-complete-config" in cluster_args
    with TritonServer(
        repository,
        http_port=0,
        grpc_port=0,
        metrics_port=0,
        model_control_mode="explicit",
        models=[SCORER.name, TYPES.name],
        extra_args=["--disable-auto-complete-config"],
    ) as srv:
        yield srv


def test_generated_repository_loads_ready(server: TritonServer, repository: Path) -> None:
    config = (repository / SCORER.name / "config.pbtxt").read_text()
    assert config == render_config(SCORER, cpu_only=True)
    assert (repository / SCORER.name / "1" / "model.py").read_bytes() == (
        EXAMPLES / "fraud-scorer" / "1" / "model.py"
    ).read_bytes()
    for name in (SCORER.name, TYPES.name):
        with _OPENER.open(f"{server.http_url}/v2/models/{name}/ready", timeout=10) as response:
            assert response.status == 200
    index = get_json(f"{server.http_url}/v2/models/{SCORER.name}")
    assert index["versions"] == ["1"]
    assert index["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 5]}]


def test_http_step_body_returns_the_right_scores(server: TritonServer) -> None:
    rows = [features(*t) for t in TRANSACTIONS]
    body = encode_request(infer_request(SCORER, {"features": rows}))
    status, answer = post(server.http_url + infer_path(SCORER), body)
    assert status == 200, answer
    outputs = parse_infer_response(SCORER, answer)
    risk = outputs["risk"]
    assert risk.shape == (len(rows), 1)
    got = [row[0] for row in risk.rows()]
    assert got == pytest.approx([expected_risk(row) for row in rows], rel=1e-6, abs=1e-7)
    assert got[0] < 0.01 < 0.9 < got[1], "a small domestic purchase is safe, the rest is not"


def test_dynamic_batching_config_is_what_triton_runs(server: TritonServer) -> None:
    config = get_json(f"{server.http_url}/v2/models/{SCORER.name}/config")
    batching = config["dynamic_batching"]
    # Sized for the stream plane's micro-batches (examples/models/fraud_scorer.py says why).
    assert batching.get("preferred_batch_size", []) in ([], [1024])  # Triton fills in the max
    assert batching["max_queue_delay_microseconds"] == 500
    assert batching["default_queue_policy"]["max_queue_size"] == 4096
    assert batching["default_queue_policy"]["default_timeout_microseconds"] == 0
    assert config["max_batch_size"] == 1024
    assert config["version_policy"] == {"latest": {"num_versions": 1}}
    assert [(g["kind"], g["count"]) for g in config["instance_group"]] == [("KIND_CPU", 2)]
    assert config["model_warmup"][0]["inputs"]["features"]["zero_data"] is True


def test_concurrent_requests_are_batched(server: TritonServer) -> None:
    stats_url = f"{server.http_url}/v2/models/{SCORER.name}/stats"
    before = get_json(stats_url)["model_stats"][0]
    body = encode_request(infer_request(SCORER, {"features": [features(*TRANSACTIONS[1])]}))
    errors: list[str] = []

    def client() -> None:
        for _ in range(8):
            status, answer = post(server.http_url + infer_path(SCORER), body)
            if status != 200:
                errors.append(answer.decode())

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    # a backend reports a request's statistics after sending its answer: wait for them
    deadline = time.monotonic() + 10.0
    while True:
        after = get_json(stats_url)["model_stats"][0]
        settled = int(after["inference_count"]) - int(before["inference_count"]) >= 64
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    inferences = int(after["inference_count"]) - int(before["inference_count"])
    executions = int(after["execution_count"]) - int(before["execution_count"])
    assert inferences == 64
    assert executions < inferences, "dynamic batching merged no requests"


def test_grpc_client_path_gives_the_same_scores(server: TritonServer) -> None:
    rows = [features(*t) for t in TRANSACTIONS]
    with TritonGrpcClient(server.grpc_url, SCORER, timeout_seconds=30) as client:
        result = client.infer({"features": rows})
    assert result["risk"].shape == (len(rows), 1)
    assert result["risk"][:, 0].tolist() == pytest.approx(
        [expected_risk(row) for row in rows], rel=1e-6, abs=1e-7
    )


def test_every_datatype_of_the_body_reaches_the_model(server: TritonServer) -> None:
    body = infer_request(
        TYPES,
        {"tokens": [3, 40, 500, 6000], "mask": [True, False, True, False], "text": ["héllo"]},
    )
    status, answer = post(server.http_url + infer_path(TYPES), encode_request(body))
    assert status == 200, answer
    outputs = parse_infer_response(TYPES, answer)
    assert outputs["kept"].data == (503,)
    assert outputs["shout"].data == ("HÉLLO",)


def test_triton_exports_the_metrics_the_autoscalers_read(server: TritonServer) -> None:
    with _OPENER.open(server.metrics_url, timeout=10) as response:
        text = response.read().decode()
    for metric in TRITON_METRICS.values():
        assert f'{metric}{{model="{SCORER.name}",version="1"}}' in text


def test_the_compiled_fraud_pipelines_http_step_scores_right(server: TritonServer) -> None:
    """The exact body the compiled WorkflowTemplate's http step sends, against the real Triton."""
    from rtflow.generators.compiler import compile_pipelines
    from rtflow.loader import load_pipelines

    _, (pipeline,) = load_pipelines(str(EXAMPLES.parent / "fraud_detection.py"))
    import fraud_detection  # loaded by load_pipelines, with its folder on sys.path

    # Without stream=, scoring is the workflow plane's http step (with it, the stream workers
    # call Triton over gRPC: tests/integration/test_stream_*.py).
    whole = dataclasses.replace(pipeline.build(), stream=None, latency_budget_ms=None)
    bundle = compile_pipelines([whole])
    (template,) = [m.body for m in bundle.manifests if m.kind == "WorkflowTemplate"]
    (step,) = [t for t in template["spec"]["templates"] if t["name"] == "score"]
    http = step["http"]
    assert http["url"].endswith("/v2/models/fraud-scorer/infer")
    transaction = {"amount": 4200.0, "country": "FR", "card_country": "US", "hour": 3}
    # What Argo substitutes: the compute-features output parameter, the runtime's JSON text.
    vector = fraud_detection.compute_features(transaction)
    body = http["body"].replace("{{inputs.parameters.features}}", json.dumps(vector))
    path = http["url"].split(":8000", 1)[1]
    status, answer = post(server.http_url + path, body.encode())
    assert status == 200, answer
    decision = fraud_detection.decide(json.loads(answer), transaction)
    assert decision.risk == pytest.approx(expected_risk(vector), rel=1e-6)
    assert decision.action == ("review" if decision.risk > 0.9 else "allow")
    assert decision.risk > 0.5  # a large foreign night purchase is risky: the math is not vacuous


def test_the_grpc_client_stage_runs_from_its_compiled_command_line(
    server: TritonServer, tmp_path: Path
) -> None:
    """via="grpc": the container step's exact command, with Argo's substitutions, on real Triton."""
    import os
    import subprocess
    import sys

    import rtflow
    from rtflow.generators.compiler import compile_pipelines
    from rtflow.gpu.serving import triton_serving

    serving = triton_serving("fraud-triton", [SCORER], pool=example.POOL)

    @rtflow.pipeline(name="grpc-scoring")
    def grpc_scoring(features: list[float]) -> None:
        rtflow.infer(serving, SCORER, {"features": features}, via="grpc", name="score")

    bundle = compile_pipelines([grpc_scoring.build()])
    (template,) = [m.body for m in bundle.manifests if m.kind == "WorkflowTemplate"]
    (step,) = [t for t in template["spec"]["templates"] if t["name"] == "score"]
    (task,) = [t for t in template["spec"]["templates"][0]["dag"]["tasks"] if t["name"] == "score"]
    vector = features(4200.0, 1.0, 1.0, 1.0, 0.0)
    values = {
        "url": server.grpc_url.removeprefix("grpc://").removeprefix("http://"),
        "model": SCORER.name,
        "tensors": task["arguments"]["parameters"][0]["value"].replace(
            "{{workflow.parameters.features}}", json.dumps(vector)
        ),
        "timeout_seconds": "10",
    }
    argv = [*step["container"]["command"], *step["container"]["args"]]
    for name, value in values.items():
        argv = [a.replace(f"{{{{inputs.parameters.{name}}}}}", value) for a in argv]
    argv = [
        sys.executable if a == "python" else a.replace("/tmp/rtflow/outputs", str(tmp_path))
        for a in argv
    ]
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ), timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads((tmp_path / "result").read_text())
    (risk,) = [o for o in answer["outputs"] if o["name"] == "risk"]
    assert risk["shape"] == [1, 1]
    assert risk["data"][0] == pytest.approx(expected_risk(vector), rel=1e-6)
