"""The real Kubernetes API server (etcd + kube-apiserver built from their Go modules, with the
upstream CRDs of the pinned Argo, Argo CD, KEDA, Strimzi and prometheus-operator releases)
receives what rtflow compiles: every example and test pipeline, base and every overlay, as
kustomize builds it, server-side applied with strict field validation. The server, not rtflow,
says whether it is valid; a test first shows that it does reject what is invalid."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from deployables import TARGETS, built_documents

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable, default_crd_files

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def control_plane() -> Iterator[ControlPlane]:
    plane = ControlPlane()
    try:
        plane.start()
    except ControlPlaneUnavailable as exc:
        component_missing(str(exc))
    try:
        if not default_crd_files():
            component_missing("no CRDs under .tools/schemas: run tools/provision.sh")
        plane.install_crds()
        yield plane
    finally:
        plane.close()


def _template(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": "probe", "namespace": "default"},
        "spec": {
            "entrypoint": "main",
            "templates": [{"name": "main", "container": {"image": "busybox"}}],
            **spec,
        },
    }


def test_the_server_rejects_an_unknown_field_and_a_wrong_type(control_plane: ControlPlane) -> None:
    control_plane.apply([_template()], dry_run=True)  # the valid one passes
    with pytest.raises(Exception, match="entrypointt: field not declared in schema"):
        control_plane.apply([_template(entrypointt="main")], dry_run=True)
    with pytest.raises(Exception, match="parallelism: expected numeric"):
        control_plane.apply([_template(parallelism="many")], dry_run=True)
    bad_deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "probe", "namespace": "default"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(Exception, match="replicas"):
        control_plane.apply([bad_deployment], dry_run=True)


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.stem)
def test_every_built_folder_is_accepted_by_the_api_server(
    control_plane: ControlPlane, target: Path, tmp_path: Path
) -> None:
    for name, documents in built_documents(target, tmp_path).items():
        namespaces = sorted(
            {d["metadata"]["namespace"] for d in documents if d["metadata"].get("namespace")}
        )
        # The namespaces an environment names exist in its cluster (rtflow does not own them).
        control_plane.apply([_namespace(ns) for ns in namespaces])
        # A pipeline that names no namespace goes where it is applied (Argo CD's destination).
        control_plane.apply([_namespace(DESTINATION)])
        try:
            control_plane.apply(documents, namespace=DESTINATION, dry_run=True)
        except Exception as exc:  # the server's answer, whole
            pytest.fail(f"{target.name} {name}: the API server refused it: {exc}", pytrace=False)


DESTINATION = "rtflow-destination"


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def test_close_leaves_no_process() -> None:
    try:
        plane = ControlPlane().start()
    except ControlPlaneUnavailable as exc:
        component_missing(str(exc))
    pids = plane.pids
    assert len(pids) == 2
    plane.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
