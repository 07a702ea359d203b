"""A real Triton Inference Server (from the nvidia-pytriton wheel) serving a Python-backend model.

The model repository is written by hand here, not generated, so that these tests pin the launcher
and Triton's own behaviour independently of rtflow's config.pbtxt generator.

Fixtures live in this module rather than tests/integration/conftest.py, which belongs to the
Kafka fixtures.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import component_missing

from rtflow.gpu import triton_server as ts
from rtflow.gpu.triton_server import (
    TritonServer,
    TritonStartupError,
    TritonStartupTimeout,
    TritonUnavailable,
)

pytestmark = pytest.mark.integration

MODEL = "scorer"
WEIGHTS = (0.5, -0.25, 1.0, 0.125)
BIAS = -0.75

CONFIG_PBTXT = f"""\
name: "{MODEL}"
backend: "python"
max_batch_size: 8
input [
  {{
    name: "features"
    data_type: TYPE_FP32
    dims: [ 4 ]
  }}
]
output [
  {{
    name: "score"
    data_type: TYPE_FP32
    dims: [ 1 ]
  }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 500
}}
instance_group [
  {{
    count: 1
    kind: KIND_CPU
  }}
]
"""

# Computes in float64 and rounds once to float32, so the test can reproduce every bit with
# Python floats (the weights, bias and inputs are dyadic, so the dot product is exact).
MODEL_PY = f"""\
import numpy as np
import triton_python_backend_utils as pb_utils

WEIGHTS = np.array({list(WEIGHTS)!r}, dtype=np.float64)
BIAS = {BIAS!r}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            features = pb_utils.get_input_tensor_by_name(request, "features").as_numpy()
            z = features.astype(np.float64) @ WEIGHTS + BIAS
            score = (1.0 / (1.0 + np.exp(-z))).astype(np.float32).reshape(-1, 1)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("score", score)]))
        return responses
"""

ROWS = [[1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 0.0, 2.0]]

# Reports which interpreter, environment and numpy the Python-backend stub really runs, so the
# launcher's LD_LIBRARY_PATH / PATH handling is checked from inside the stub.
PROBE = "probe"
PROBE_CONFIG = f"""\
name: "{PROBE}"
backend: "python"
max_batch_size: 0
input [ {{ name: "ignored" data_type: TYPE_INT32 dims: [ 1 ] }} ]
output [ {{ name: "report" data_type: TYPE_STRING dims: [ 1 ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
"""
PROBE_PY = """\
import json
import platform
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def _libpython():
    with open("/proc/self/maps") as maps:
        paths = {line.split()[-1] for line in maps if "libpython" in line}
    return sorted(paths)


class TritonPythonModel:
    def execute(self, requests):
        report = json.dumps(
            {
                "version": platform.python_version(),
                "prefix": sys.prefix,
                "numpy": np.__version__,
                "libpython": _libpython(),
            }
        )
        tensor = pb_utils.Tensor("report", np.array([report.encode()], dtype=np.object_))
        return [pb_utils.InferenceResponse([tensor]) for _ in requests]
"""


def write_model(repo: Path, name: str, config: str, model_py: str) -> Path:
    version = repo / name / "1"
    version.mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    (version / "model.py").write_text(model_py)
    return repo


def expected_score(row: list[float]) -> float:
    """The model's score, by plain Python math, rounded to float32 as Triton returns it."""
    z = sum(x * w for x, w in zip(row, WEIGHTS, strict=True)) + BIAS
    score = 1.0 / (1.0 + math.exp(-z))
    return float(struct.unpack("<f", struct.pack("<f", score))[0])


def post_json(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), json.loads(exc.read())


def get_status(url: str) -> int | None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return int(exc.code)
    except OSError:
        return None


def infer_body(rows: list[list[float]], input_name: str = "features") -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": input_name,
                "shape": [len(rows), 4],
                "datatype": "FP32",
                "data": [x for row in rows for x in row],
            }
        ],
        "outputs": [{"name": "score"}],
    }


def group_is_gone(pgid: int) -> bool:
    """True once no process (server or orphaned stub) is left in the server's process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture(scope="module")
def triton_available() -> None:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except TritonUnavailable as exc:
        component_missing(str(exc))


@pytest.fixture(scope="module")
def model_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = write_model(tmp_path_factory.mktemp("repo"), MODEL, CONFIG_PBTXT, MODEL_PY)
    return write_model(repo, PROBE, PROBE_CONFIG, PROBE_PY)


@pytest.fixture(scope="module")
def server(triton_available: None, model_repository: Path) -> Iterator[TritonServer]:
    with TritonServer(model_repository, http_port=0, grpc_port=0, metrics_port=0) as srv:
        yield srv


def test_model_loads_ready_on_loopback(server: TritonServer) -> None:
    assert server.is_running
    assert server.startup_seconds is not None and server.startup_seconds < 120
    assert get_status(f"{server.http_url}/v2/health/ready") == 200
    assert get_status(f"{server.http_url}/v2/models/{MODEL}/ready") == 200
    assert get_status(f"{server.http_url}/v2/models/absent/ready") == 400
    log = server.log_path.read_text(errors="replace")
    assert f"Started HTTPService at 127.0.0.1:{server.http_port}" in log
    assert f"Started GRPCInferenceService at 127.0.0.1:{server.grpc_port}" in log
    assert f"Started Metrics Service at 127.0.0.1:{server.metrics_port}" in log


def test_grpc_and_metrics_endpoints_answer(server: TritonServer) -> None:
    assert server.http_url == f"http://{server.http_address}"
    host, port = server.grpc_url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5):
        pass
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(server.metrics_url, timeout=5) as response:
        assert b"nv_inference_count" in response.read()


def test_rest_infer_returns_exact_scores(server: TritonServer) -> None:
    status, body = post_json(f"{server.http_url}/v2/models/{MODEL}/infer", infer_body(ROWS))
    assert status == 200, body
    assert body["model_name"] == MODEL
    [output] = body["outputs"]
    assert output["name"] == "score"
    assert output["datatype"] == "FP32"
    assert output["shape"] == [2, 1]
    assert output["data"] == [expected_score(row) for row in ROWS]


def test_stub_runs_this_interpreter_and_environment(server: TritonServer) -> None:
    body = {"inputs": [{"name": "ignored", "shape": [1], "datatype": "INT32", "data": [0]}]}
    status, answer = post_json(f"{server.http_url}/v2/models/{PROBE}/infer", body)
    assert status == 200, answer
    report = json.loads(answer["outputs"][0]["data"][0])
    assert report["version"] == platform.python_version()
    assert Path(report["prefix"]).resolve() == Path(sys.prefix).resolve()
    assert int(report["numpy"].split(".")[0]) < 2
    libdir = ts.python_library_dir()
    if libdir is not None:
        assert [str(Path(p).parent) for p in report["libpython"]] == [libdir]


def test_wrong_input_name_is_a_400_with_tritons_error(server: TritonServer) -> None:
    url = f"{server.http_url}/v2/models/{MODEL}/infer"
    status, body = post_json(url, infer_body(ROWS, input_name="feature"))
    assert status == 400
    assert "unexpected inference input 'feature'" in body["error"]


def test_stop_then_restart(triton_available: None, model_repository: Path) -> None:
    with TritonServer(
        model_repository, http_port=0, grpc_port=0, metrics_port=0, stop_timeout=20
    ) as srv:
        url = srv.http_url
        first_pid = srv.pid
        assert first_pid is not None

        srv.stop()
        assert not srv.is_running
        assert group_is_gone(first_pid)
        assert get_status(f"{url}/v2/health/live") is None

        srv.start()
        assert srv.http_url == url
        status, body = post_json(f"{url}/v2/models/{MODEL}/infer", infer_body(ROWS[:1]))
        assert status == 200, body
        assert body["outputs"][0]["data"] == [expected_score(ROWS[0])]

        second_pid = srv.pid
        srv.restart()
        assert srv.pid != second_pid
        assert second_pid is not None and group_is_gone(second_pid)
        assert get_status(f"{url}/v2/models/{MODEL}/ready") == 200
        last_pid = srv.pid
    assert last_pid is not None and group_is_gone(last_pid)


def test_failing_model_raises_with_the_log_tail(
    triton_available: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = MODEL_PY + "\nraise RuntimeError('model exploded on import')\n"
    repo = write_model(tmp_path / "repo", MODEL, CONFIG_PBTXT, broken)
    temp_root = tmp_path / "temp"
    temp_root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_root))
    srv = TritonServer(repo, http_port=0, grpc_port=0, metrics_port=0)
    with pytest.raises(TritonStartupError, match="model exploded on import") as info, srv:
        pass
    assert "exited with code" in str(info.value)
    assert not srv.is_running
    assert list(temp_root.iterdir()) == [], "a failed start must not leave its temp folder"


def test_startup_timeout_names_the_waiting_model_and_kills_the_server(
    triton_available: None, tmp_path: Path
) -> None:
    slow = MODEL_PY.replace(
        "class TritonPythonModel:",
        "class TritonPythonModel:\n    def initialize(self, args):\n"
        "        import time\n        time.sleep(60)\n",
    )
    repo = write_model(tmp_path / "repo", MODEL, CONFIG_PBTXT, slow)
    srv = TritonServer(
        repo, http_port=0, grpc_port=0, metrics_port=0, startup_timeout=3, stop_timeout=5
    )
    started = time.monotonic()
    with pytest.raises(TritonStartupTimeout, match="not ready after 3s") as info:
        srv.start()
    assert "loading: scorer:1" in info.value.log_tail
    assert isinstance(info.value, TimeoutError)
    assert not srv.is_running
    assert time.monotonic() - started < 30
    srv.close()


def test_cli_serves_until_interrupted(triton_available: None, model_repository: Path) -> None:
    http_port, grpc_port, metrics_port = ts.free_ports(3)
    cmd = [
        sys.executable,
        "-m",
        "rtflow.gpu.triton_server",
        f"--model-repository={model_repository}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert first.startswith("Triton ready"), first + (
                proc.stderr.read() if proc.stderr else ""
            )
            url = f"http://127.0.0.1:{http_port}/v2/models/{MODEL}/infer"
            status, body = post_json(url, infer_body(ROWS))
            assert status == 200, body
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
    assert get_status(f"http://127.0.0.1:{http_port}/v2/health/live") is None


def test_missing_binary_is_unavailable_with_a_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(TritonUnavailable, match="not an executable"):
        ts.locate_triton(tmp_path / "no-such-tritonserver")
    monkeypatch.setenv(ts.ENV_BINARY, str(tmp_path / "nothing-here"))
    with pytest.raises(TritonUnavailable, match=ts.ENV_BINARY):
        TritonServer(tmp_path).start()


def test_numpy_2_is_refused_before_starting(
    triton_available: None, model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "2.1.0")
    with pytest.raises(TritonUnavailable, match=r"numpy<2"):
        TritonServer(model_repository, http_port=0, grpc_port=0, metrics_port=0).start()


def test_stub_environment_points_at_this_interpreter() -> None:
    install = ts.TritonInstall(
        binary=Path("/x/bin/tritonserver"),
        backends=Path("/x/backends"),
        stub=None,
        library_dirs=(Path("/x/libs"),),
        caches=None,
    )
    env = ts.server_env(install, {"EXTRA": "1"})
    first_path = env["PATH"].split(os.pathsep)[0]
    assert first_path == os.path.dirname(sys.executable)
    ld_dirs = env["LD_LIBRARY_PATH"].split(os.pathsep)
    assert "/x/libs" in ld_dirs
    libdir = ts.python_library_dir()
    if libdir is not None:
        assert ld_dirs[0] == libdir
    assert env["EXTRA"] == "1"


def test_a_start_aborted_by_the_python_backends_lock_race_is_retried_once(
    triton_available: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Triton's Python backend can abort at start-up with boost::interprocess::lock_exception
    (upstream #8882); the launcher starts it once more. Here the model's first load dies the
    same way, the second is fine: the server comes up, and says it retried."""
    marker = tmp_path / "aborted-once"
    aborting = MODEL_PY.replace(
        "class TritonPythonModel:",
        "class TritonPythonModel:\n    def initialize(self, args):\n"
        "        import os, sys\n"
        "        marker = os.environ['ABORT_ONCE_MARKER']\n"
        "        if not os.path.exists(marker):\n"
        "            open(marker, 'w').close()\n"
        '            sys.stderr.write("terminate called after throwing an instance of '
        "'boost::interprocess::lock_exception'\\n\")\n"
        "            sys.stderr.flush()\n"
        "            os.abort()\n",
    )
    repo = write_model(tmp_path / "repo", MODEL, CONFIG_PBTXT, aborting)
    with TritonServer(
        repo, http_port=0, grpc_port=0, metrics_port=0, env={"ABORT_ONCE_MARKER": str(marker)}
    ) as srv:
        assert marker.exists()
        assert get_status(f"{srv.http_url}/v2/models/{MODEL}/ready") == 200
    assert "starting it once more" in capsys.readouterr().err
