"""The kind environment's Triton, started as its container starts it, serves the fraud scorer.

No container runs here, so this runs the pieces the CPU image is made of on this machine: the
image's ``tritonserver`` (``python -m rtflow.gpu.triton_exec``, the nvidia-pytriton wheel's
binary), the exact ``command``/``args`` of the Deployment the ``kind`` overlay builds, and a
model repository laid out as that Deployment's volume holds it: the overlay's CPU config.pbtxt
and the example's model.py. Only the mount point, the ports and the bind address (loopback
here) are changed. The e2e suite runs the same thing in a real cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import component_missing

from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.gpu import admin_api
from rtflow.gpu import triton_server as ts
from rtflow.loader import load_pipelines
from rtflow.triggers import SecretKey

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


def request(
    url: str, body: dict[str, Any] | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with _OPENER.open(req, timeout=10) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        with error:
            return int(error.code), error.read().decode()
    except OSError:
        return 0, None


IMAGE_SHIM = '#!/bin/sh\nexec "{python}" -m rtflow.gpu.triton_exec "$@"\n'
"""The CPU image's ``tritonserver`` (e2e/images/tritonserver-cpu.Dockerfile), on PATH here."""
FEATURES = [9.1, 1.0, 1.0, 1.0, 1.0]  # foreign, at night, online, at a new merchant: high risk


@contextlib.contextmanager
def compiled_triton(
    tmp_path: Path, deployment: dict[str, Any], out: Path, key_file: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start the Deployment's container as Kubernetes would (``command`` + ``args``), with only
    the mount point, the ports, the bind address and (``key_file``) the admin key's mount
    changed; yields the HTTP base URL and the process."""
    try:
        ts.locate_triton()
        ts.check_numpy()
    except ts.TritonUnavailable as missing:
        component_missing(str(missing))
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
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
    command = list(container["command"])
    if key_file is not None:
        command = [part.replace(f"{admin_api.KEY_DIR}/", f"{key_file.parent}/") for part in command]
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "tritonserver"
    shim.write_text(IMAGE_SHIM.format(python=sys.executable))
    shim.chmod(0o755)
    env = {
        **os.environ,
        "RTFLOW_TRITON_WORK_DIR": str(tmp_path / "scratch"),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
    }
    log_path = tmp_path / "triton.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 120
        while request(base + "/v2/health/ready")[0] != 200:
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "Triton did not become ready in 120 s"
            time.sleep(0.5)
        yield base, server
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def score(base: str) -> tuple[int, Any]:
    body = {"inputs": [{"name": "features", "shape": [1, 5], "datatype": "FP32", "data": FEATURES}]}
    return request(base + "/v2/models/fraud-scorer/infer", body)


def test_the_kind_overlays_triton_serves_the_scorer_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    deployment = kind_deployment(out)
    with compiled_triton(tmp_path, deployment, out) as (base, server):
        # The container's PID is the server itself (sh and the image's script exec), so
        # signals reach it unchanged.
        assert os.readlink(f"/proc/{server.pid}/exe").endswith("tritonserver")
        status, _ = request(base + "/v2/models/fraud-scorer/config")
        assert status != 200  # model-config is an admin endpoint: closed
        assert request(base + "/v2/models/graph-risk/ready")[0] != 200
        status, answer = score(base)
        assert status == 200, answer
        (risk,) = answer["outputs"][0]["data"]
        assert 0.9 < risk < 1.0
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0


def test_the_admin_api_is_closed_while_inference_works(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    deployment = kind_deployment(out)
    with compiled_triton(tmp_path, deployment, out) as (base, _server):
        unload = base + "/v2/repository/models/fraud-scorer/unload"
        status, answer = request(unload, {})
        assert status == 403, (status, answer)
        # Not even with a guessed key: the default one is random, drawn at start.
        status, _ = request(unload, {}, headers={admin_api.HEADER: ""})
        assert status == 403
        for path in ("/v2/repository/index", "/v2/models/stats", "/v2/logging"):
            assert request(base + path, {})[0] == 403, path
        assert request(base + "/v2/models/fraud-scorer/ready")[0] == 200
        assert score(base)[0] == 200
        assert request(base + "/v2/models/fraud-scorer")[0] == 200  # metadata stays open


def test_an_admin_key_from_a_secret_opens_the_admin_api_to_its_holder(tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    deployment = kind_deployment(out)
    secret = SecretKey("fraud-triton-admin", "key")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    container["command"] = admin_api.launch(secret)
    key_file = tmp_path / "secret" / "key"
    key_file.parent.mkdir()
    key_file.write_text("s3cret-admin\n")  # a Secret's file may end in a newline
    with compiled_triton(tmp_path, deployment, out, key_file=key_file) as (base, _server):
        unload = base + "/v2/repository/models/fraud-scorer/unload"
        assert request(unload, {}, headers={admin_api.HEADER: "wrong"})[0] == 403
        assert request(unload, {}, headers={admin_api.HEADER: "s3cret-admin"})[0] == 200
        deadline = time.monotonic() + 30
        while request(base + "/v2/models/fraud-scorer/ready")[0] == 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
