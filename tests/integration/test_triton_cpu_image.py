"""The kind environment's Triton, started as its container starts it, serves the fraud scorer.

No container runs here, so this runs the pieces the CPU image is made of on this machine: the
image's ``tritonserver`` (``python -m rtflow.gpu.triton_exec``, the nvidia-pytriton wheel's
binary), the exact ``command``/``args`` of the Deployment the ``kind`` overlay builds, and a
model repository laid out as that Deployment's volume holds it: the overlay's CPU config.pbtxt
and the example's model.py. Only the mount point, the ports and the bind address (loopback
here) are changed. The e2e suite runs the same thing in a real cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from components import component_missing

from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.gpu import triton_server as ts
from rtflow.loader import load_pipelines

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MOUNT = "/models/triton-models"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def kind_deployment(out: Path) -> dict[str, Any]:
    pipelines = [d.build() for d in load_pipelines(str(ROOT / "examples/fraud_detection.py"))[1]]
    bundle = compile_pipelines(pipelines)
    write_folder(bundle, out)
    (deployment,) = [
        m.body for m in bundle.deployed("fraud-detection", "kind")
        if m.kind == "Deployment" and m.name == "fraud-triton"
    ]  # fmt: skip
    return deployment


def request(url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=10) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), error.read().decode()
    except OSError:
        return 0, None


def test_the_kind_overlays_triton_serves_the_scorer_on_cpu(tmp_path: Path) -> None:
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as missing:
        component_missing(str(missing))
    out = tmp_path / "manifests"
    deployment = kind_deployment(out)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tritonserver"]
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == MOUNT]
    volume = tmp_path / "volume"
    # The volume as e2e fills it: <claim>/fraud/<model>/{config.pbtxt,1/model.py}.
    model_dir = volume / "fraud" / "fraud-scorer"
    (model_dir / "1").mkdir(parents=True)
    shutil.copy(
        out / "fraud-detection/overlays/kind/model-repository/fraud-scorer/config.pbtxt",
        model_dir / "config.pbtxt",
    )
    shutil.copy(ROOT / "examples/models/fraud-scorer/1/model.py", model_dir / "1" / "model.py")
    http, grpc, metrics = ts.free_ports(3)
    ports = {"--http-port": http, "--grpc-port": grpc, "--metrics-port": metrics}
    args = []
    for arg in container["args"]:
        flag = arg.split("=", 1)[0]
        if flag in ports:
            arg = f"{flag}={ports[flag]}"
        args.append(arg.replace(f"={mount['mountPath']}", f"={volume}"))
    args += [f"--{api}-address=127.0.0.1" for api in ("http", "grpc", "metrics")]
    env = {**os.environ, "RTFLOW_TRITON_WORK_DIR": str(tmp_path / "scratch")}
    log = (tmp_path / "triton.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "rtflow.gpu.triton_exec", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 120
        while request(base + "/v2/health/ready")[0] != 200:
            assert server.poll() is None, (tmp_path / "triton.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Triton did not become ready in 120 s"
            time.sleep(0.5)
        # The container's PID is the server itself (exec), so signals reach it unchanged.
        assert os.readlink(f"/proc/{server.pid}/exe").endswith("tritonserver")
        status, config = request(base + "/v2/models/fraud-scorer/config")
        assert status == 200
        assert [g["kind"] for g in config["instance_group"]] == ["KIND_CPU"]
        assert request(base + "/v2/models/graph-risk/ready")[0] != 200
        # A transaction that is foreign, at night, online, at a new merchant: high risk.
        features = [9.1, 1.0, 1.0, 1.0, 1.0]
        status, answer = request(
            base + "/v2/models/fraud-scorer/infer",
            {
                "inputs": [
                    {"name": "features", "shape": [1, 5], "datatype": "FP32", "data": features}
                ]
            },
        )
        assert status == 200, answer
        (risk,) = answer["outputs"][0]["data"]
        assert 0.9 < risk < 1.0
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        log.close()
