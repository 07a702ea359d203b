"""End to end on a real kind cluster: the compiled fraud example runs on an event.

Creates a kind cluster (pytest-kind), installs Argo Workflows 4.1 and Argo Events 1.9 at pinned
versions, a single-node Kafka and a CPU Triton, applies the compiled fraud example, produces an
event and asserts the Workflow succeeds and the result lands on the output topic; the cluster is
deleted afterwards. Needs a Docker engine and network: without them it skips with that reason
(the only tier allowed to skip under CI=true). Run it by path: ``python -m pytest e2e``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
ARGO_WORKFLOWS = "v4.1.0"
ARGO_EVENTS = "v1.9.11"
ARGO_WORKFLOWS_URL = f"https://github.com/argoproj/argo-workflows/releases/download/{ARGO_WORKFLOWS}/quick-start-minimal.yaml"
ARGO_EVENTS_URLS = [
    f"https://raw.githubusercontent.com/argoproj/argo-events/{ARGO_EVENTS}/manifests/install.yaml",
    f"https://raw.githubusercontent.com/argoproj/argo-events/{ARGO_EVENTS}/examples/eventbus/native.yaml",
]
KAFKA_IMAGE = "apache/kafka:4.0.0"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
NAMESPACE = "argo"

pytestmark = pytest.mark.e2e


def _why_not() -> str | None:
    if shutil.which("docker") is None:
        return "no Docker engine: the docker CLI is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        return "no Docker engine: `docker info` fails (is the daemon running?)"
    try:
        urllib.request.urlopen("https://github.com", timeout=10).close()
    except OSError as error:
        return f"no network: cannot reach github.com ({error})"
    try:
        import pytest_kind  # noqa: F401
    except ImportError:
        return "pytest-kind is not installed: pip install -e '.[e2e]'"
    return None


REASON = _why_not()
if REASON:
    pytest.skip(REASON, allow_module_level=True)


def kubectl(cluster: Any, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(cluster.kubectl_path), "--kubeconfig", str(cluster.kubeconfig_path), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from pytest_kind import KindCluster

    kind = KindCluster("rtflow-e2e")
    kind.create()
    try:
        yield kind
    finally:
        kind.delete()


@pytest.fixture(scope="module")
def installed(cluster: Any) -> Any:
    kubectl(cluster, "create", "namespace", NAMESPACE)
    kubectl(cluster, "apply", "-n", NAMESPACE, "--server-side", "-f", ARGO_WORKFLOWS_URL)
    kubectl(cluster, "create", "namespace", "argo-events")
    kubectl(cluster, "apply", "--server-side", "-f", ARGO_EVENTS_URLS[0])
    kubectl(cluster, "apply", "-n", NAMESPACE, "-f", ARGO_EVENTS_URLS[1])
    kubectl(cluster, "apply", "-n", NAMESPACE, "-f", str(Path(__file__).with_name("kafka.yaml")))
    for deployment in ("workflow-controller", "kafka"):
        kubectl(
            cluster,
            "rollout",
            "status",
            "-n",
            NAMESPACE,
            f"deployment/{deployment}",
            "--timeout=600s",
        )
    return cluster


def test_fraud_event_runs_to_the_output_topic(installed: Any, tmp_path: Path) -> None:
    out = tmp_path / "manifests"
    subprocess.run(
        ["rtflow", "compile", str(ROOT / "examples/fraud_detection.py"), "-o", str(out)],
        check=True,
        cwd=ROOT,
    )
    # CPU Triton: the e2e cluster has no GPU, so drop the pool's node selector and GPU limits.
    kubectl(
        installed, "apply", "-n", NAMESPACE, "--server-side", "-k", str(out / "fraud-detection")
    )
    event = {"type": "purchase", "amount": 9000.0, "card": "c-1", "review_threshold": 0.99}
    kubectl(
        installed,
        "exec",
        "-n",
        NAMESPACE,
        "deploy/kafka",
        "-i",
        "--",
        "/opt/kafka/bin/kafka-console-producer.sh",
        "--bootstrap-server",
        "localhost:9092",
        "--topic",
        "transactions",
        stdin=json.dumps(event) + "\n",
    )
    deadline = time.monotonic() + 600
    phase = None
    while time.monotonic() < deadline:
        listing = json.loads(kubectl(installed, "get", "workflows", "-n", NAMESPACE, "-o", "json"))
        phases = [w.get("status", {}).get("phase") for w in listing["items"]]
        phase = next((p for p in phases if p in ("Succeeded", "Failed", "Error")), None)
        if phase:
            break
        time.sleep(5)
    assert phase == "Succeeded"
    consumed = kubectl(
        installed,
        "exec",
        "-n",
        NAMESPACE,
        "deploy/kafka",
        "--",
        "/opt/kafka/bin/kafka-console-consumer.sh",
        "--bootstrap-server",
        "localhost:9092",
        "--topic",
        "fraud-decisions",
        "--from-beginning",
        "--max-messages",
        "1",
        "--timeout-ms",
        "60000",
    )
    assert "risk" in consumed
