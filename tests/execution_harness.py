"""The fraud example on the execution tier (rtflow.testing.execution): its WorkflowTemplate, as
compiled without ``stream=`` (every stage on the workflow plane, scoring an Argo http step),
run by Argo's real workflow-controller, its pods by the pod runner with Argo's real argoexec,
its decision published to a real SASL_SSL Kafka broker with the credentials the compiled
template projects from real Secrets, its score from a real Triton through Argo's agent.

Shared by tests/integration/test_execution_tier.py and benchmarks/control_plane.py.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from rtflow.testing.control_plane import ControlPlane
from rtflow.testing.execution import ExecutionPlane
from rtflow.testing.kafka_broker import KafkaBroker
from rtflow.testing.kafka_security import BrokerSecurity, Scram
from rtflow.testing.pod_runner import Image

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
NAMESPACE = "fraud-execution"
TEMPLATE = "fraud-detection"
WORKFLOW_ACCOUNT = "fraud-detection-workflow"
STAND_IN = Path(__file__).resolve().parent / "stand_in_images.py"
# The Service names and ports the compiled manifests use (examples/fraud_detection.py).
BROKER_NAMES = ["kafka-0.kafka.svc", "kafka-1.kafka.svc", "kafka-2.kafka.svc"]
BROKER_PORT = 9092
TRITON_NAME, TRITON_PORT = "fraud-triton", 8000
USER = Scram("fraud-detection", secrets.token_hex(16))
TERMINAL = {"Succeeded", "Failed", "Error"}


def fraud_pipeline() -> Any:
    """The example without ``stream=``: the workflow plane's whole pipeline."""
    import dataclasses

    from rtflow.loader import load_pipelines

    _, (pipeline,) = load_pipelines(str(EXAMPLES / "fraud_detection.py"))
    return dataclasses.replace(pipeline.build(), stream=None, latency_budget_ms=None)


def workflow_documents(pipeline: Any) -> list[dict[str, Any]]:
    """What the execution needs of the compiled bundle: the workflow's ServiceAccount, Role,
    RoleBinding (and any Secret rtflow emits for it) and the WorkflowTemplate."""
    from rtflow.generators.compiler import compile_pipelines

    bundle = compile_pipelines([pipeline])
    wanted = {"ServiceAccount", "Role", "RoleBinding", "Secret", "WorkflowTemplate"}
    return [dict(m.body) for m in bundle.manifests if m.kind in wanted]


def broker_security() -> BrokerSecurity:
    """The broker's certificate names the Service names the stage dials, as in a cluster."""
    return BrokerSecurity.generate(USER, hosts=("127.0.0.1", "localhost", *BROKER_NAMES))


def credentials(security: BrokerSecurity) -> list[dict[str, Any]]:
    """The Secrets the compiled template projects into its pods, holding the real material."""

    def secret(name: str, **data: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                "stringData": data}  # fmt: skip

    return [
        secret("kafka-credentials", username=USER.user, password=USER.password),
        secret("kafka-ca", **{"ca.crt": security.tls.ca_pem}),
        secret("card-api", token=secrets.token_hex(8)),
        secret("on-call-slack", url="https://hooks.slack.invalid/T0/B0"),
    ]


IMAGE_ROOT = "/rtflow-image"
"""Where a stand-in image holds this virtualenv and the checkout's folders (see Image.binds)."""


def python_image(**env: str) -> Image:
    """An image holding this virtualenv (its ``python`` first on PATH) and the examples on
    PYTHONPATH, at IMAGE_ROOT: rtflow's stage images, as this machine can hold them."""
    return Image(
        env={"PATH": f"{IMAGE_ROOT}/venv/bin:/usr/local/bin:/usr/bin:/bin",
             "PYTHONPATH": f"{IMAGE_ROOT}/examples", "PYTHONUNBUFFERED": "1", **env},
        # The checkout at its own path too: an editable install (`pip install -e .`) finds
        # rtflow's modules there, by absolute path.
        binds={sys.prefix: f"{IMAGE_ROOT}/venv", str(EXAMPLES): f"{IMAGE_ROOT}/examples",
               str(ROOT): str(ROOT)},
    )  # fmt: skip


def stand_in_image(*programs: str) -> Image:
    """An image whose ``programs`` are played by tests/stand_in_images.py."""
    python = f"{IMAGE_ROOT}/venv/bin/python"
    script = f"{IMAGE_ROOT}/stand-in/{STAND_IN.name}"
    return Image(
        commands={p: [python, script, p] for p in programs},
        binds={sys.prefix: f"{IMAGE_ROOT}/venv", str(STAND_IN.parent): f"{IMAGE_ROOT}/stand-in"},
    )


def images() -> dict[str, Image]:
    """The fraud example's images as this machine holds them: rtflow's stage images are this
    virtualenv with the example's modules; the two user images run the stand-in."""
    stage = python_image()
    return {
        "ghcr.io/acme/fraud/features": stage,
        "ghcr.io/acme/fraud/decider": stage,
        "ghcr.io/acme/fraud/reviewer": stage,
        "ghcr.io/rtflow/kafka-publish": stage,
        "ghcr.io/acme/fraud/card-actions": stand_in_image("/card-actions"),
        "ghcr.io/acme/fraud/notifier": stand_in_image("/notifier"),
    }


# The notifier container has no command: the controller would ask the registry for the image's
# entrypoint. Argo's `images` setting answers instead, as an air-gapped cluster configures it.
CONTROLLER_CONFIG = {
    "images": yaml.safe_dump({"ghcr.io/acme/fraud/notifier:1.0.0": {"entrypoint": ["/notifier"]}})
}


def start(plane: ControlPlane, broker: KafkaBroker, triton_http: tuple[str, int],
          security: BrokerSecurity, work_dir: Path | None = None,
          controller_env: dict[str, str] | None = None) -> ExecutionPlane:  # fmt: skip
    """The execution plane for the fraud template, in NAMESPACE, ready for Workflows."""
    execution = ExecutionPlane(plane, NAMESPACE, images(), controller_config=CONTROLLER_CONFIG,
                               controller_env=controller_env, work_dir=work_dir)  # fmt: skip
    execution.start()
    try:
        host, port = broker.secure_bootstrap_servers.rsplit(":", 1)
        secure = (host, int(port))
        # The bootstrap names and the address the broker advertises, both to its SASL_SSL port.
        execution.expose(BROKER_NAMES, BROKER_PORT, secure)
        execution.netns.bridge(secure[1], secure)
        execution.expose([TRITON_NAME], TRITON_PORT, triton_http)
        documents = workflow_documents(fraud_pipeline())
        plane.apply([*documents, *credentials(security)], namespace=NAMESPACE)
        execution.prepare_namespace([WORKFLOW_ACCOUNT])
    except BaseException:
        execution.close()
        raise
    return execution


def submit(plane: ControlPlane, transaction: dict[str, Any] | str, **parameters: str) -> str:
    """A fraud Workflow from the template (as the Sensor creates one); returns its name."""
    text = transaction if isinstance(transaction, str) else json.dumps(transaction)
    return create_workflow(plane, NAMESPACE, TEMPLATE, {"transaction": text, **parameters})


def create_workflow(
    plane: ControlPlane, namespace: str, template: str, parameters: dict[str, str]
) -> str:
    """A Workflow from ``template`` with these arguments; returns its name."""
    from kubernetes import client

    arguments = [{"name": k, "value": v} for k, v in parameters.items()]
    body = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
        "metadata": {"generateName": f"{template}-", "namespace": namespace},
        "spec": {"workflowTemplateRef": {"name": template},
                 "arguments": {"parameters": arguments}},
    }  # fmt: skip
    api = client.CustomObjectsApi(plane.api_client())
    made = api.create_namespaced_custom_object("argoproj.io", "v1alpha1", namespace,
                                               "workflows", body)  # fmt: skip
    return str(made["metadata"]["name"])


def wait_for(
    execution: ExecutionPlane,
    name: str,
    until: Callable[[dict[str, Any]], bool],
    timeout: float = 180.0,
) -> dict[str, Any]:
    """The Workflow once ``until`` holds for it (or it ended); a bound, not an assertion: the
    caller asserts what the Workflow says."""
    deadline = time.monotonic() + timeout
    while True:
        wf = execution.workflow(name)
        if until(wf) or wf.get("status", {}).get("phase") in TERMINAL:
            return wf
        if time.monotonic() > deadline:
            return wf
        time.sleep(0.2)


def finished(wf: dict[str, Any]) -> bool:
    return wf.get("status", {}).get("phase") in TERMINAL


def nodes(wf: dict[str, Any]) -> list[dict[str, Any]]:
    return list(wf.get("status", {}).get("nodes", {}).values())


def by_name(wf: dict[str, Any], display: str) -> list[dict[str, Any]]:
    return [n for n in nodes(wf) if n.get("displayName") == display]


def stand_in_calls(execution: ExecutionPlane, workflow: str, program: str) -> list[Any]:
    """The JSON lines the stand-in printed in this Workflow's pods, for ``program``."""
    assert execution.runner is not None
    calls = []
    for log in sorted(execution.runner.work_dir.glob(f"{workflow}-*/main.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                record = json.loads(line)
                if record.get("program") == program:
                    calls.append(record)
    return calls
