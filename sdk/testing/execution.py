"""The execution tier in one object: Argo's real workflow-controller and a pod runner over a real
API server, in a network namespace of their own, with the root namespace's servers a pipeline
calls (Kafka, Triton) reachable inside under the names its manifests use.

:class:`ExecutionPlane` starts, on a running :class:`~rtflow.testing.control_plane.ControlPlane`
(with Argo's CRDs installed): a :class:`~rtflow.testing.netns.NetworkNamespace`; the
:class:`~rtflow.testing.workflow_controller.WorkflowController`; the workflow namespace with
what a cluster's kube-controller-manager would put there (below); and a
:class:`~rtflow.testing.pod_runner.PodRunner` for it. :meth:`ExecutionPlane.close` stops the
runner (its processes are killed), the controller (SIGKILL), then every process left in the
network namespace, and deletes the namespace: no process outlives it.

kube-controller-manager does not run here; two of its small duties are done by
:meth:`ExecutionPlane.prepare_namespace`, named for what they are: the root CA publisher's
``kube-root-ca.crt`` ConfigMap (read by every ServiceAccount token projection), and the token
controller's filling of ``kubernetes.io/service-account-token`` Secrets (Argo's agent pod mounts
``<serviceaccount>.service-account-token``, which a cluster's token controller fills; rtflow's
manifests hold it, empty).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self, cast

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable, default_bin_dir
from rtflow.testing.netns import NetworkNamespace
from rtflow.testing.pod_network import PodNetworks
from rtflow.testing.pod_runner import Image, PodRunner
from rtflow.testing.workflow_controller import WorkflowController, service_account_token

ARGOEXEC_IMAGE = "quay.io/argoproj/argoexec"


class ExecutionPlane:
    """Controller + pod runner for ``namespace`` (see the module docstring); with
    ``networks``, each pod runs in a network namespace of its own
    (:mod:`rtflow.testing.pod_network`) instead of the controller's."""

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        images: Mapping[str, Image],
        *,
        controller_config: dict[str, str] | None = None,
        controller_env: dict[str, str] | None = None,
        work_dir: Path | None = None,
        networks: PodNetworks | None = None,
    ) -> None:
        self.plane = plane
        self.networks = networks
        self.namespace = namespace
        self.images = dict(images)
        self.controller_config = controller_config
        self.controller_env = controller_env
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="rtflow-execution-"))
        self.netns = NetworkNamespace()
        self.controller: WorkflowController | None = None
        self.runner: PodRunner | None = None

    def start(self) -> Self:
        bin_dir = default_bin_dir()
        if not os.access(bin_dir / "argoexec", os.X_OK):
            raise ControlPlaneUnavailable(
                f"argoexec not built in {bin_dir}: run tools/build-go-tools.sh argoexec"
            )
        self.netns.start()
        try:
            self.work_dir.mkdir(parents=True, exist_ok=True)
            self.controller = WorkflowController(
                self.plane, self.netns, config=self.controller_config,
                log_path=self.work_dir / "workflow-controller.log", env=self.controller_env,
                managed_namespace=self.namespace,
            ).start()  # fmt: skip
            images = {
                ARGOEXEC_IMAGE: Image(  # held at a path no pod volume can hide
                    env={"PATH": "/rtflow-image/argoexec:/usr/local/bin:/usr/bin:/bin"},
                    binds={str(bin_dir): "/rtflow-image/argoexec"},
                ),
                **self.images,
            }
            self.plane.apply([{"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": self.namespace}}])  # fmt: skip
            self.runner = PodRunner(
                self.plane,
                self.netns,
                self.namespace,
                images,
                self.work_dir / "pods",
                networks=self.networks,
            ).start()
        except BaseException:
            self.close()
            raise
        return self

    def expose(self, names: list[str], port: int, target: tuple[str, int]) -> None:
        """``names`` resolve inside the namespace to 127.0.0.1, where ``port`` is bridged to
        ``target`` of the root namespace (a Service's name and port, to the local server)."""
        for name in names:
            self.netns.add_host(name)
        self.netns.bridge(port, target)

    def prepare_namespace(self, service_accounts: list[str]) -> None:
        """kube-controller-manager's part (see the module docstring): the cluster CA published
        in the namespace, and each account's ``<name>.service-account-token`` Secret filled as
        the token controller fills it, when the applied manifests hold one (it is never made
        here: a pod that mounts a missing one stays Pending, as in a cluster)."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self.plane.api_client())
        ca = self.plane.ca_file.read_text()
        self.plane.apply([{
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kube-root-ca.crt", "namespace": self.namespace},
            "data": {"ca.crt": ca},
        }])  # fmt: skip
        for account in service_accounts:
            name = f"{account}.service-account-token"
            try:
                secret = core.read_namespaced_secret(name, self.namespace)
            except ApiException as exc:
                if exc.status != 404:
                    raise
                continue
            if secret.type != "kubernetes.io/service-account-token":
                continue
            token = service_account_token(self.plane, self.namespace, account)
            data = {"token": token, "ca.crt": ca, "namespace": self.namespace}
            encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
            core.patch_namespaced_secret(name, self.namespace, {"data": encoded})

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()
        if self.controller is not None:
            self.controller.close()
        with contextlib.suppress(Exception):
            self.netns.close()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        pids = list(self.runner.pids) if self.runner is not None else []
        if self.controller is not None and self.controller.pid is not None:
            pids.append(self.controller.pid)
        return pids + self.netns.pids()

    def workflow(self, name: str) -> dict[str, Any]:
        from kubernetes import client

        api = client.CustomObjectsApi(self.plane.api_client())
        answer = api.get_namespaced_custom_object(
            "argoproj.io", "v1alpha1", self.namespace, "workflows", name
        )
        return cast(dict[str, Any], answer)
