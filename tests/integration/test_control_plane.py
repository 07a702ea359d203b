"""The real Kubernetes API server (etcd + kube-apiserver built from their Go modules, with the
upstream CRDs of the pinned Argo, Argo CD, KEDA, Strimzi and prometheus-operator releases)
receives what rtflow compiles: every example and test pipeline, base and every overlay, as
kustomize builds it, server-side applied with strict field validation. The server, not rtflow,
says whether it is valid; a test first shows that it does reject what is invalid."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from components import component_missing
from deployables import TARGETS, built_documents

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable

pytestmark = pytest.mark.integration


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


# What no rtflow ServiceAccount may do unless its own Role says so: read credentials, start
# pods or shell into them, change what runs, grant itself more.
FORBIDDEN = (
    ("", "secrets", "get"),
    ("", "secrets", "list"),
    ("", "pods", "create"),
    ("", "pods/exec", "create"),
    ("", "configmaps", "update"),
    ("apps", "deployments", "patch"),
    ("argoproj.io", "workflows", "create"),
    ("argoproj.io", "workflows", "delete"),
    ("argoproj.io", "workflowtemplates", "update"),
    ("argoproj.io", "sensors", "update"),
    ("rbac.authorization.k8s.io", "rolebindings", "create"),
    ("rbac.authorization.k8s.io", "roles", "escalate"),
)


Access = tuple[str, str, str]  # (API group, resource, verb)
Grant = tuple[str, str, str, str]  # and the one object it names ("" for any: no resourceNames)


def _granted(documents: list[dict[str, Any]], namespace: str, account: str) -> set[Grant]:
    """(group, resource, verb, name) that the Roles bound to this ServiceAccount grant (a
    rule with resourceNames grants each named object only: an Argo agent reading the Secret
    of an http step's header)."""
    roles = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Role"}
    granted = set()
    for binding in (d for d in documents if d["kind"] == "RoleBinding"):
        if binding["metadata"].get("namespace", DESTINATION) != namespace:
            continue
        if not any(
            s["kind"] == "ServiceAccount" and s["name"] == account
            and s.get("namespace", namespace) == namespace
            for s in binding.get("subjects", [])
        ):  # fmt: skip
            continue
        role = roles[binding["roleRef"]["name"]]
        for rule in role.get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in rule.get("resources", []):
                    for name in rule.get("resourceNames") or [""]:
                        granted.update(
                            (group, resource, verb, name) for verb in rule.get("verbs", [])
                        )
    return granted


def _allowed(plane: ControlPlane, namespace: str, account: str, what: Access | Grant) -> bool:
    """`kubectl auth can-i VERB RESOURCE[/NAME] --as system:serviceaccount:NS:NAME -n NS`."""
    from kubernetes import client

    group, resource, verb = what[:3]
    name = what[3] if len(what) == 4 else ""
    subresource = ""
    if "/" in resource:
        resource, subresource = resource.split("/", 1)
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                    "system:authenticated"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace, group=group, resource=resource, subresource=subresource,
                verb=verb, name=name or None,
            ),
        )
    )  # fmt: skip
    api = client.AuthorizationV1Api(plane.api_client())
    return bool(api.create_subject_access_review(review).status.allowed)


def test_the_rbac_check_sees_a_grant(control_plane: ControlPlane) -> None:
    """The check above is not vacuous: a Role that grants reading Secrets is seen to."""
    ns, sa = "rbac-probe", "leaky"
    control_plane.apply([_namespace(ns)])
    meta = {"name": sa, "namespace": ns}
    control_plane.apply([
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta,
         "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta,
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": sa},
         "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}]},
    ])  # fmt: skip
    assert _allowed(control_plane, ns, sa, ("", "secrets", "get"))
    assert not _allowed(control_plane, ns, sa, ("", "secrets", "list"))
    assert not _allowed(control_plane, "default", sa, ("", "secrets", "get"))


@pytest.mark.parametrize("target", TARGETS, ids=lambda p: p.stem)
def test_each_service_account_may_do_what_it_needs_and_nothing_else(
    control_plane: ControlPlane, target: Path, tmp_path: Path
) -> None:
    """The Roles are applied for real and the server's RBAC answers, as `kubectl auth can-i
    --as` asks it: every verb a Role grants is allowed in its namespace and nowhere else, and
    the FORBIDDEN list is refused to every account whose Role does not name it."""
    checked = roles = 0
    for name, documents in built_documents(target, tmp_path).items():
        namespaces = {d["metadata"].get("namespace") or DESTINATION for d in documents}
        control_plane.apply([_namespace(ns) for ns in sorted(namespaces)])
        rbac = [d for d in documents if d["kind"] in {"ServiceAccount", "Role", "RoleBinding"}]
        roles += sum(d["kind"] == "Role" for d in rbac)
        control_plane.apply(rbac, namespace=DESTINATION)
        for account in (d for d in rbac if d["kind"] == "ServiceAccount"):
            namespace = account["metadata"].get("namespace") or DESTINATION
            sa = account["metadata"]["name"]
            granted = _granted(documents, namespace, sa)
            for what in sorted(granted):
                assert _allowed(control_plane, namespace, sa, what), (name, sa, what)
                assert not _allowed(control_plane, "kube-system", sa, what), (name, sa, what)
            for what in FORBIDDEN:  # a grant of named objects only does not allow any object
                if (*what, "") not in granted:
                    assert not _allowed(control_plane, namespace, sa, what), (name, sa, what)
            checked += 1
    # A pipeline that runs as the user's own ServiceAccount gets no Role from rtflow.
    assert checked or not roles, f"{target.name}: Roles but no ServiceAccount of rtflow's"


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
