"""The support-triage example on the execution tier: Argo's real workflow-controller runs its
compiled WorkflowTemplate (classify, route, and the page that only an urgent ticket reaches),
its function stage as the stage image would run it, its two user containers by the stand-in
(tests/stand_in_images.py), their credentials projected from real Secrets. A controller of its
own, managing the pipeline's namespace only, as the fraud tier's does its own."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from typing import Any

import execution_harness as fx
import pytest
import yaml
from components import component_missing

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable
from rtflow.testing.execution import ExecutionPlane
from rtflow.testing.netns import NamespaceUnavailable

pytestmark = pytest.mark.integration

TEMPLATE = "support-triage"
REGISTRY = "ghcr.io/acme/support"


def _pipeline() -> Any:
    from rtflow.loader import load_pipelines

    _, (pipeline,) = load_pipelines(str(fx.EXAMPLES / "support_triage.py"))
    return pipeline.build()


@pytest.fixture(scope="module")
def support(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    ExecutionPlane
]:  # fmt: skip
    pipeline = _pipeline()
    images = {
        f"{REGISTRY}/classifier": fx.python_image(),
        f"{REGISTRY}/router": fx.stand_in_image("/router"),
        f"{REGISTRY}/pager": fx.stand_in_image("/pager"),
    }
    # The two containers have no command: Argo's `images` setting names their entrypoints.
    config = {"images": yaml.safe_dump({
        f"{REGISTRY}/router:1.3.0": {"entrypoint": ["/router"]},
        f"{REGISTRY}/pager:2.0.1": {"entrypoint": ["/pager"]},
    })}  # fmt: skip
    plane = ExecutionPlane(
        control_plane, pipeline.namespace, images, controller_config=config,
        work_dir=tmp_path_factory.mktemp("support"),
    )  # fmt: skip
    try:
        plane.start()
    except (NamespaceUnavailable, ControlPlaneUnavailable) as exc:
        component_missing(str(exc))
    try:
        credentials = [
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
             "stringData": {key: secrets.token_hex(8)}}
            for name, key in (("helpdesk-api", "token"), ("pager", "routing-key"))
        ]  # fmt: skip
        control_plane.apply(
            [*fx.workflow_documents(pipeline), *credentials], namespace=pipeline.namespace
        )
        plane.prepare_namespace([])
        yield plane
    finally:
        plane.close()


def _run(plane: ExecutionPlane, ticket: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = fx.create_workflow(
        plane.plane, plane.namespace, TEMPLATE, {"ticket": json.dumps(ticket), "mode": "live"}
    )
    return name, fx.wait_for(plane, name, fx.finished)


def test_an_urgent_ticket_is_routed_and_pages(support: ExecutionPlane) -> None:
    name, wf = _run(support, {"subject": "refund", "body": "invoice wrong", "tier": 5})
    assert wf["status"]["phase"] == "Succeeded", fx.nodes(wf)
    (routed,) = fx.stand_in_calls(support, name, "/router")
    assert routed["args"] == ["--queue", "billing", "--urgency", "1.0"]
    assert routed["credential_files"] == {"HELPDESK_TOKEN_FILE": True}
    (paged,) = fx.stand_in_calls(support, name, "/pager")
    assert paged["args"] == ["--urgency", "1.0"]
    assert paged["credential_files"] == {"PAGER_ROUTING_KEY_FILE": True}


def test_a_routine_ticket_is_routed_and_does_not_page(support: ExecutionPlane) -> None:
    name, wf = _run(support, {"subject": "login", "body": "cannot sign in", "tier": 1})
    assert wf["status"]["phase"] == "Succeeded", fx.nodes(wf)
    (routed,) = fx.stand_in_calls(support, name, "/router")
    assert routed["args"] == ["--queue", "technical", "--urgency", "0.2"]
    assert {n["phase"] for n in fx.by_name(wf, "page-on-call")} == {"Skipped"}
    assert fx.stand_in_calls(support, name, "/pager") == []
