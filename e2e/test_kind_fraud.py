"""End to end on a real kind cluster: the compiled fraud example runs on an event.

Creates a kind cluster (pytest-kind), installs Argo Workflows and Argo Events at pinned versions,
a single-node Kafka speaking SASL_SSL/SCRAM with its own CA, and the images the example's
``kind`` environment names (built from this checkout: rtflow's stage images, the CPU Triton,
stand-ins for the two container stages). Then, as a user would: ``rtflow compile`` the example,
put the overlay's model config in Triton's volume, ``kubectl apply -k overlays/kind``, produce a
transaction and assert the stream workers' decision lands on the output topic (no Workflow),
produce a risky one and assert the hand-off starts the review Workflow with the hot path's
outputs; then ``rtflow submit --env kind --wait`` runs the workflow-plane part through rtflow's
own submit path. The stream plane's CRDs (KEDA, Strimzi, prometheus-operator) are installed
from the pinned sources the strict schemas come from; their controllers are not. The cluster is
deleted afterwards (``--keep-cluster`` keeps it for debugging).

Needs a Docker engine and network: without them it skips with that reason (the only tier allowed
to skip under CI=true). Run it by path: ``python -m pytest e2e``; see e2e/README.md.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_NAME = "rtflow-e2e"
DEADLINE_S = 900

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

import cluster as e2e  # noqa: E402  (e2e/cluster.py, on the path via e2e/conftest.py)


def run(*args: str, stdin: str | None = None, timeout: float = 900) -> str:
    result = subprocess.run(
        list(args), input=stdin, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    assert result.returncode == 0, f"{' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


class Kube:
    """kubectl against the kind cluster (the version pytest-kind downloads, pinned here)."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.kubeconfig = str(kind.kubeconfig_path)

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 900) -> str:
        return run(
            str(self.kind.kubectl_path), "--kubeconfig", self.kubeconfig, *args,
            stdin=stdin, timeout=timeout,
        )  # fmt: skip

    def apply(self, documents: list[dict[str, Any]]) -> None:
        self("apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(documents))

    def wait_for(self, what: str, timeout: float = DEADLINE_S) -> Any:
        """Poll ``kubectl get -o json`` until it finds something (deployments that a
        controller creates later cannot be waited on with ``kubectl wait``)."""
        deadline = time.monotonic() + timeout
        while True:
            found = json.loads(self("get", *what.split(), "-o", "json"))
            if found.get("items", [found]):
                return found
            assert time.monotonic() < deadline, f"nothing matched {what!r} in {timeout} s"
            time.sleep(5)

    def diagnostics(self) -> str:
        parts = []
        for args in (
            ("get", "pods", "-A", "-o", "wide"),
            ("get", "workflows,eventsources,sensors", "-n", e2e.PIPELINE_NAMESPACE, "-o", "yaml"),
            ("get", "events", "-n", e2e.PIPELINE_NAMESPACE, "--sort-by=.lastTimestamp"),
        ):
            result = subprocess.run(
                [str(self.kind.kubectl_path), "--kubeconfig", self.kubeconfig, *args],
                capture_output=True,
                text=True,
            )
            parts.append(f"$ kubectl {' '.join(args)}\n{result.stdout}{result.stderr}")
        return "\n".join(parts)[-20000:]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def kube(request: pytest.FixtureRequest) -> Iterator[Kube]:
    import pytest_kind.cluster as kind_module

    # pytest-kind reads its versions from module globals when it downloads.
    kind_module.KIND_VERSION = e2e.KIND_VERSION
    kind_module.KUBECTL_VERSION = e2e.KUBECTL_VERSION
    kind = kind_module.KindCluster(CLUSTER_NAME, image=e2e.NODE_IMAGE)
    kind.create()
    try:
        yield Kube(kind)
    finally:
        if not request.config.getoption("keep_cluster", default=False):
            kind.delete()


@pytest.fixture(scope="module")
def manifests(work: Path) -> Path:
    """The example compiled as a user compiles it."""
    out = work / "manifests"
    run(
        sys.executable, "-m", "rtflow.cli", "compile", "examples/fraud_detection.py", "-o", str(out)
    )
    return out


@pytest.fixture(scope="module")
def images(kube: Kube, work: Path) -> list[str]:
    dist = work / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT))
    (wheel,) = dist.glob("rtflow-*.whl")
    tags = []
    for index, image in enumerate(e2e.images(wheel, work / "context")):
        dockerfile = work / f"image-{index}.Dockerfile"
        dockerfile.write_text(image.dockerfile)
        run("docker", "build", "--file", str(dockerfile), "--tag", image.tag, str(image.context))
        kube.kind.load_docker_image(image.tag)
        tags.append(image.tag)
    return tags


@pytest.fixture(scope="module")
def platform(kube: Kube, images: list[str], manifests: Path) -> Kube:
    """Argo Workflows, Argo Events, the bus, Kafka, the Secrets and the model volume."""
    kube("create", "namespace", "argo")
    kube("apply", "--server-side", "-n", "argo", "-f", e2e.ARGO_WORKFLOWS_INSTALL)
    kube("create", "namespace", "argo-events")
    kube("apply", "--server-side", "-f", e2e.ARGO_EVENTS_INSTALL)
    kube("create", "namespace", e2e.PIPELINE_NAMESPACE)
    security = e2e.kafka_security(secrets.token_hex(16))
    kube.apply(
        e2e.kafka_objects(security, _cluster_id())
        + e2e.pipeline_secrets(security)
        + e2e.model_volume()
    )
    for namespace, deployment in (
        ("argo", "workflow-controller"),
        ("argo-events", "controller-manager"),
        (e2e.KAFKA_NAMESPACE, "kafka"),
    ):
        kube("rollout", "status", "-n", namespace, f"deployment/{deployment}", "--timeout=600s")
    kube.apply(e2e.stream_plane_crds())
    kube.apply([e2e.event_bus()])
    for topic in e2e.TOPICS:
        kafka(kube, "kafka-topics.sh", "--create", "--topic", topic, "--partitions", "1")
    # Triton's volume, as the model repository is laid out for "pvc://triton-models/fraud".
    ns = e2e.PIPELINE_NAMESPACE
    kube("wait", "-n", ns, "--for=condition=Ready", "pod/model-loader", "--timeout=300s")
    target = f"/models/{e2e.MODEL_PATH}/fraud-scorer"
    kube("exec", "-n", ns, "model-loader", "--", "mkdir", "-p", f"{target}/1")
    config = manifests / "fraud-detection/overlays/kind/model-repository/fraud-scorer/config.pbtxt"
    kube("cp", str(config), f"{ns}/model-loader:{target}/config.pbtxt")
    model = ROOT / "examples/models/fraud-scorer/1/model.py"
    kube("cp", str(model), f"{ns}/model-loader:{target}/1/model.py")
    return kube


def _cluster_id() -> str:
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def kafka(kube: Kube, tool: str, *args: str, stdin: str | None = None) -> str:
    """A Kafka CLI tool inside the broker's pod, over its loopback admin listener (with a heap
    of its own: the pod's KAFKA_HEAP_OPTS is the broker's)."""
    return kube(
        "exec", "-i", "-n", e2e.KAFKA_NAMESPACE, "deploy/kafka", "--",
        "env", "KAFKA_HEAP_OPTS=-Xmx128m", f"/opt/kafka/bin/{tool}",
        "--bootstrap-server", f"127.0.0.1:{e2e.KAFKA_ADMIN_PORT}", *args, stdin=stdin,
    )  # fmt: skip


def transaction(transaction_id: str) -> dict[str, Any]:
    """A small domestic purchase in a shop: low risk, so the run ends without review."""
    return {
        "id": transaction_id,
        "type": "purchase",
        "amount": 25.0,
        "country": "US",
        "card_country": "US",
        "channel": "in-store",
        "hour": 14,
        "first_time_merchant": False,
        "review_threshold": 0.9,
    }


def decisions(kube: Kube, count: int) -> list[dict[str, Any]]:
    out = kafka(
        kube, "kafka-console-consumer.sh", "--topic", "fraud-decisions", "--from-beginning",
        "--max-messages", str(count), "--timeout-ms", "120000",
    )  # fmt: skip
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def finished(kube: Kube, known: set[str]) -> dict[str, Any]:
    """The first Workflow not in ``known`` that ends, waiting up to DEADLINE_S."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        listing = json.loads(kube("get", "workflows", "-n", e2e.PIPELINE_NAMESPACE, "-o", "json"))
        for workflow in listing["items"]:
            phase = workflow.get("status", {}).get("phase")
            if workflow["metadata"]["name"] not in known and phase in (
                "Succeeded",
                "Failed",
                "Error",
            ):
                return dict(workflow)
        time.sleep(5)
    raise AssertionError(f"no Workflow ended within {DEADLINE_S} s\n{kube.diagnostics()}")


@pytest.fixture(scope="module")
def deployed(platform: Kube, manifests: Path) -> Kube:
    """The kind overlay, applied as Argo CD would sync it, and everything in it running."""
    kube = platform
    kube("apply", "--server-side", "-k", str(manifests / "fraud-detection/overlays/kind"))
    ns = e2e.PIPELINE_NAMESPACE
    kube("rollout", "status", "-n", ns, "deployment/fraud-triton", "--timeout=900s")
    for selector in (
        "eventsource-name=fraud-detection-transactions",
        "sensor-name=fraud-detection",
    ):
        kube.wait_for(f"deployments -n {ns} -l {selector}")
        kube("wait", "-n", ns, "--for=condition=Available", "deployment", "-l", selector,
             "--timeout=600s")  # fmt: skip
    # The EventSource reads from the newest offset (oldest: false), so a transaction produced
    # before its consumer group owns the partition would be skipped, by design: wait for it.
    deadline = time.monotonic() + 300
    while "transactions" not in group_members(kube, "fraud-detection"):
        assert time.monotonic() < deadline, f"the EventSource never joined\n{kube.diagnostics()}"
        time.sleep(5)
    time.sleep(10)  # the Sensor's subscription to the bus, which no status shows
    return kube


def group_members(kube: Kube, group: str) -> str:
    """``kafka-consumer-groups --describe --members --verbose``: the partitions each member
    of ``group`` owns (empty while the group is forming)."""
    result = subprocess.run(
        [
            str(kube.kind.kubectl_path), "--kubeconfig", kube.kubeconfig, "exec", "-n",
            e2e.KAFKA_NAMESPACE, "deploy/kafka", "--", "env", "KAFKA_HEAP_OPTS=-Xmx128m",
            "/opt/kafka/bin/kafka-consumer-groups.sh", "--bootstrap-server",
            f"127.0.0.1:{e2e.KAFKA_ADMIN_PORT}", "--describe", "--group", group, "--members",
            "--verbose",
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result.stdout if result.returncode == 0 else ""


def test_a_transaction_is_decided_by_the_stream_workers(deployed: Kube) -> None:
    """The hot path runs in the stream Deployment: a low-risk transaction's decision lands on
    the output topic, and no Workflow is started for it."""
    kube = deployed
    kube(
        "rollout", "status", "-n", e2e.PIPELINE_NAMESPACE, "deployment/fraud-detection-stream",
        "--timeout=600s",
    )  # fmt: skip
    before = workflow_names(kube)
    event = transaction("e2e-event-1")
    kafka(kube, "kafka-console-producer.sh", "--topic", "transactions", stdin=json.dumps(event))
    (decision,) = [d for d in decisions(kube, 1) if d["transaction_id"] == "e2e-event-1"]
    assert decision["action"] == "allow" and 0.0 < decision["risk"] < 0.5
    assert workflow_names(kube) == before


def test_a_risky_transaction_is_handed_off_to_a_workflow(deployed: Kube) -> None:
    """Above the review threshold the workers hand the event off; the Sensor starts the review
    Workflow with the hot path's outputs as parameters, and it waits for the analyst."""
    kube = deployed
    before = workflow_names(kube)
    risky = {**transaction("e2e-risky-1"), "review_threshold": 0.0}
    kafka(kube, "kafka-console-producer.sh", "--topic", "transactions", stdin=json.dumps(risky))
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        started = workflow_names(kube) - before
        if started:
            break
        time.sleep(2)
    else:
        raise AssertionError(f"no hand-off Workflow within {DEADLINE_S} s\n{kube.diagnostics()}")
    (name,) = started
    workflow = json.loads(kube("get", "workflow", name, "-n", e2e.PIPELINE_NAMESPACE, "-o", "json"))
    parameters = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}
    assert json.loads(parameters["transaction"])["id"] == "e2e-risky-1"
    assert float(parameters["decide-risk"]) > 0.0


def workflow_names(kube: Kube) -> set[str]:
    listing = json.loads(kube("get", "workflows", "-n", e2e.PIPELINE_NAMESPACE, "-o", "json"))
    return {w["metadata"]["name"] for w in listing["items"]}


def test_rtflow_submit_runs_the_template_again(deployed: Kube) -> None:
    kube = deployed
    before = {
        w["metadata"]["name"]
        for w in json.loads(kube("get", "workflows", "-n", e2e.PIPELINE_NAMESPACE, "-o", "json"))[
            "items"
        ]
    }
    out = run(
        sys.executable, "-m", "rtflow.cli", "submit", "examples/fraud_detection.py",
        "--env", "kind", "--kubeconfig", kube.kubeconfig,
        "-p", f"transaction={json.dumps(transaction('e2e-submit-1'))}",
        # The workflow plane runs the hand-off part: the hot path's outputs are parameters.
        "-p", "compute-features-result=[3.2, 0, 0, 0, 0]", "-p", "decide-risk=0.1",
        "--wait", "--timeout", str(DEADLINE_S),
    )  # fmt: skip
    name = out.strip().splitlines()[-1]
    assert name not in before
    phase = json.loads(kube("get", "workflow", name, "-n", e2e.PIPELINE_NAMESPACE, "-o", "json"))[
        "status"
    ]["phase"]
    # Below the threshold the review branch is skipped: the run ends at once, successfully.
    assert phase == "Succeeded", kube.diagnostics()
