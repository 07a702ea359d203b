"""Argo Workflows' real workflow-controller against the real API server of
:mod:`rtflow.testing.control_plane`, in a network namespace of its own.

``tools/build-go-tools.sh`` builds ``argo-workflow-controller`` from the Argo Workflows Go module
(v4.1.4, the release ``argo-lint`` pins). It is installed as Argo's own install manifests install
it: ``manifests/cluster-install-no-crds`` of the same module (read from the Go module cache,
built by kustomize) gives the ``argo`` namespace its ServiceAccount, the controller's Role,
ClusterRole and bindings, and ``workflow-controller-configmap``; only the Deployments and the
Service are left out (there is no kubelet to run them). The controller then runs as a process
with the identity of that ServiceAccount: a token from the TokenRequest API in its kubeconfig,
so the API server checks its every request against upstream's RBAC, as in a cluster (the
admin's token would hide a missing permission).

The controller serves metrics on :9090 and health on :6060 on every interface, ports it does not
let one change: it runs in a :class:`~rtflow.testing.netns.NetworkNamespace`, where a bridge
listening on the namespace's 127.0.0.1 at the API server's port carries its connections to the
API server in the root namespace. Leader election is off (``LEADER_ELECTION_DISABLE``): with
``managed_namespace`` a controller manages that namespace only (``--namespaced``) and reads a
ConfigMap of its own, so controllers of different namespaces can run side by side. It ignores
SIGTERM while it works, so :meth:`WorkflowController.close` kills it (SIGKILL), as a test
session that dies does (parent-death signal).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any, Self, cast

from rtflow.stages.reaper import parent_death_signal
from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable, default_bin_dir
from rtflow.testing.netns import NetworkNamespace
from rtflow.testing.supervised import SupervisedProcess

ARGO_MODULE = "github.com/argoproj/argo-workflows/v4"
ARGO_VERSION = "v4.1.4"  # tools/argo-workflow-controller/go.mod
CONTROLLER_NAMESPACE = "argo"
CONTROLLER_ACCOUNT = "argo"
CONFIG_MAP = "workflow-controller-configmap"
# What the installation's Deployments and Service would run: no kubelet here to run them.
NOT_INSTALLED = {"Deployment", "Service"}


def argo_module_dir() -> Path:
    """The Argo Workflows module as the Go build fetched it (its install manifests)."""
    gomodcache = os.environ.get("GOMODCACHE")
    if not gomodcache:
        go = "go" if _which("go") else "/usr/local/go/bin/go"
        try:
            gomodcache = subprocess.run(
                [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ControlPlaneUnavailable(f"no Go to find the module cache: {exc}") from exc
    folder = Path(gomodcache) / f"{ARGO_MODULE}@{ARGO_VERSION}"
    if not folder.is_dir():
        raise ControlPlaneUnavailable(
            f"{folder} missing: run tools/build-go-tools.sh argo-workflow-controller"
        )
    return folder


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def install_manifests() -> list[dict[str, Any]]:
    """Argo's ``cluster-install-no-crds`` as kustomize builds it, without what needs a kubelet."""
    from rtflow.verify.kustomize import kustomize_build

    folder = argo_module_dir() / "manifests" / "cluster-install-no-crds"
    return [d for d in kustomize_build(folder) if d["kind"] not in NOT_INSTALLED]


def service_account_token(
    plane: ControlPlane, namespace: str, account: str, seconds: int = 86400
) -> str:
    """A token for the ServiceAccount from the TokenRequest API, as a kubelet gets one."""
    from kubernetes import client

    api = client.CoreV1Api(plane.api_client())
    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    answer = api.create_namespaced_service_account_token(account, namespace, request)
    assert answer.status is not None
    return str(answer.status.token)


class WorkflowController(SupervisedProcess):
    """The real workflow-controller, installed in ``argo`` and running in ``netns``."""

    def __init__(
        self,
        plane: ControlPlane,
        netns: NetworkNamespace,
        *,
        bin_dir: Path | None = None,
        config: dict[str, str] | None = None,
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
        managed_namespace: str | None = None,
    ) -> None:
        super().__init__()
        self.plane = plane
        self.env = env or {}
        self.managed_namespace = managed_namespace
        self.netns = netns
        self._bin_dir = bin_dir
        self.config = config or {}
        self.log_path = log_path

    def start(self) -> Self:
        binary = (self._bin_dir or default_bin_dir()) / "argo-workflow-controller"
        if not os.access(binary, os.X_OK):
            raise ControlPlaneUnavailable(
                f"argo-workflow-controller not built in {binary.parent}: run "
                "tools/build-go-tools.sh argo-workflow-controller"
            )
        plane = self.plane
        assert plane.work_dir is not None and plane.port is not None
        plane.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": CONTROLLER_NAMESPACE}}]
        )
        documents = install_manifests()
        # Each controller reads a ConfigMap of its own: two (of two namespaces) can run at once.
        config_map = f"{CONFIG_MAP}-{self.managed_namespace or 'cluster'}"
        for doc in documents:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == CONFIG_MAP:
                doc["metadata"]["name"] = config_map
                doc["data"] = {**(doc.get("data") or {}), **self.config}
        plane.apply(documents, namespace=CONTROLLER_NAMESPACE)
        token = service_account_token(plane, CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)
        kubeconfig = plane.kubeconfig(
            plane.work_dir / f"workflow-controller-{config_map}.kubeconfig", token
        )
        scope = (
            ["--namespaced", f"--managed-namespace={self.managed_namespace}"]
            if self.managed_namespace
            else []
        )
        self.netns.bridge(plane.port, ("127.0.0.1", plane.port))
        self.log_path = self.log_path or plane.work_dir / "workflow-controller.log"
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(plane.work_dir),
            "LEADER_ELECTION_DISABLE": "true",
            **self.env,
        }
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [
                    *self.netns.exec_prefix(),
                    str(binary),
                    f"--kubeconfig={kubeconfig}",
                    f"--namespace={CONTROLLER_NAMESPACE}",
                    f"--configmap={config_map}",
                    *scope,
                    f"--executor-image=quay.io/argoproj/argoexec:{ARGO_VERSION}",
                    "--workflow-workers=4",
                    "--pod-cleanup-workers=2",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=plane.work_dir,
                preexec_fn=parent_death_signal(),
            )
        self._supervise(proc, _kill)
        return self


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL: the controller does not stop on SIGTERM while its workers run."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def resume(
    plane: ControlPlane,
    namespace: str,
    workflow: str,
    node: str,
    outputs: dict[str, str] | None = None,
) -> None:
    """``argo node set WF --node-field-selector displayName=NODE --output-parameter K=V`` then
    ``argo resume WF --node-field-selector displayName=NODE``, as the Argo Server does them
    (``workflow/util``'s ``updateSuspendedNode``): on the Workflow's status, the active suspend
    node's supplied output parameters get their values, then the node is marked Succeeded;
    the controller carries on from there. (The two commands are two updates; this is one, with
    the same end state.) An update that loses a race with the controller
    (409) is done again on the fresh object."""
    from datetime import UTC, datetime

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    api = client.CustomObjectsApi(plane.api_client())
    while True:
        wf = cast(
            dict[str, Any],
            api.get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows", workflow
            ),
        )
        nodes = wf.get("status", {}).get("nodes", {})
        (node_id,) = [
            i for i, n in nodes.items()
            if n.get("displayName") == node and n.get("type") == "Suspend"
            and n.get("phase") == "Running"
        ]  # fmt: skip
        found = nodes[node_id]
        for name, value in (outputs or {}).items():
            params = found.get("outputs", {}).get("parameters", [])
            (param,) = [p for p in params if p["name"] == name]
            if "supplied" not in (param.get("valueFrom") or {}):
                raise ValueError(f"{node}: output {name} is not supplied, or was set already")
            if param.get("globalName"):  # rtflow's approvals have none
                raise NotImplementedError(f"{node}: output {name} is global")
            param["value"] = value
            param.pop("valueFrom")
        for param in found.get("outputs", {}).get("parameters", []):
            supplied = param.get("valueFrom") or {}
            if "supplied" in supplied:  # OverrideOutputParametersWithDefault
                if "default" not in supplied:
                    raise ValueError(
                        f"{node}: output {param['name']} has not been set and has no default"
                    )
                param["value"] = supplied["default"]
                param.pop("valueFrom")
        found["phase"] = "Succeeded"
        found["finishedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        try:
            api.replace_namespaced_custom_object(
                "argoproj.io", "v1alpha1", namespace, "workflows", workflow, wf
            )
            return
        except ApiException as exc:
            if exc.status != 409:
                raise
