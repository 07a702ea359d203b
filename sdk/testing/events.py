"""The events tier in one object: Argo Events for real. An event reaching an EventSource's pod
goes through a real JetStream EventBus to a Sensor's pod, whose trigger creates the Workflow
that Argo's real workflow-controller runs.

:class:`EventsPlane` starts, on a running :class:`~rtflow.testing.control_plane.ControlPlane`
(with the Argo Workflows and Argo Events CRDs installed):

- a :class:`~rtflow.testing.nats_server.NatsServer` (nats-server v2.10.29 with JetStream, the
  release Argo Events ships for its JetStream bus): the EventBus, declared as
  ``jetstreamExotic`` (:meth:`EventsPlane.event_bus`), since nothing here runs the StatefulSet
  the controller makes for a managed ``jetstream`` bus;
- the real kube-controller-manager (:class:`~rtflow.testing.controller_manager.ControllerManager`:
  the deployment, replicaset and serviceaccount controllers), which turns the Deployments the
  Argo Events controller makes into pods;
- an :class:`~rtflow.testing.execution.ExecutionPlane` for ``namespace`` (the workflow-controller
  and the pod runner), each pod in a network namespace of its own
  (:mod:`rtflow.testing.pod_network`: Argo Events' pods all serve metrics on :7777), with the
  API server and the bus reachable in every pod as Services would make them;
- Argo Events' controller, installed as Argo Events installs it: ``manifests/namespace-install``
  of the v1.9.11 module (its ServiceAccount, Role, RoleBinding, ConfigMap **and its
  Deployment**, ``--namespaced``), into ``namespace``. kube-controller-manager makes its pod,
  the pod runner runs it with the real ``argo-events`` binary standing in for the image
  ``quay.io/argoproj/argo-events`` (:data:`ARGO_EVENTS_IMAGE`, its ENTRYPOINT
  ``/bin/argo-events``), as the ServiceAccount upstream's Role binds. It then makes the
  EventSources' and Sensors' Deployments (``eventsource-service``, ``sensor-service`` of the same
  binary), which take the same path.

:meth:`EventsPlane.close` stops the execution plane (every pod's processes, their network
namespaces, the workflow-controller), kube-controller-manager and the NATS server: no process
outlives it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable, default_bin_dir
from rtflow.testing.controller_manager import ControllerManager
from rtflow.testing.execution import ExecutionPlane
from rtflow.testing.nats_server import NatsServer
from rtflow.testing.pod_network import PodNetworks, Service
from rtflow.testing.pod_runner import Image

ARGO_EVENTS_MODULE = "github.com/argoproj/argo-events"
ARGO_EVENTS_VERSION = "v1.9.11"  # tools/argo-events/go.mod
ARGO_EVENTS_IMAGE = "quay.io/argoproj/argo-events"
EVENT_BUS_HOST = "eventbus-nats"
"""The name the EventBus's NATS server has in every pod (a Service's, played)."""
EVENT_BUS_PORT = 4222
EVENT_BUS_CA = "eventbus-nats-ca"
"""The Secret holding the CA of the NATS server's certificate (the bus's ``tls.caCertSecret``)."""
STREAM = "default"  # Argo Events' JetStream stream (v1alpha1.JetStreamStreamName)
# What an exotic bus's stream is made with: upstream's defaults, one replica (one server).
STREAM_CONFIG = "maxMsgs: 50000\nmaxAge: 168h\nmaxBytes: -1\nreplicas: 1\nduplicates: 300s\n"
# Namespaced kinds whose RoleBinding subjects kustomize's namespace transformer rewrites.
_BINDINGS = {"RoleBinding", "ClusterRoleBinding"}
_CLUSTER_KINDS = {"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Namespace"}


def argo_events_module_dir() -> Path:
    """The Argo Events module as the Go build fetched it (its install manifests)."""
    from rtflow.testing.workflow_controller import argo_module_dir

    gomodcache = argo_module_dir().parents[3]  # <cache>/github.com/argoproj/argo-workflows/v4@...
    folder = gomodcache / f"{ARGO_EVENTS_MODULE}@{ARGO_EVENTS_VERSION}"
    if not folder.is_dir():
        raise ControlPlaneUnavailable(f"{folder} missing: run tools/build-go-tools.sh argo-events")
    return folder


def move_to_namespace(documents: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    """``documents`` in ``namespace``, as a kustomization's ``namespace:`` moves them: every
    namespaced object, and the ServiceAccount subjects of the bindings."""
    moved = []
    for doc in documents:
        doc = copy.deepcopy(doc)
        if doc["kind"] not in _CLUSTER_KINDS:
            doc["metadata"]["namespace"] = namespace
        if doc["kind"] in _BINDINGS:
            for subject in doc.get("subjects") or []:
                if subject.get("kind") == "ServiceAccount":
                    subject["namespace"] = namespace
        moved.append(doc)
    return moved


def install_manifests(namespace: str) -> list[dict[str, Any]]:
    """Argo Events' ``namespace-install`` (kustomize), without its CRDs (the control plane has
    them), moved to ``namespace``."""
    from rtflow.verify.kustomize import kustomize_build

    documents = kustomize_build(argo_events_module_dir() / "manifests" / "namespace-install")
    wanted = [d for d in documents if d["kind"] != "CustomResourceDefinition"]
    return move_to_namespace(wanted, namespace)


class EventsPlane:
    """Argo Events + the execution tier for ``namespace`` (see the module docstring).

    ``images`` are the pipeline's images (as for :class:`ExecutionPlane`); ``services`` are
    more Services every pod reaches (a Kafka broker the Sensor's dead-letter trigger writes to).
    """

    def __init__(
        self,
        plane: ControlPlane,
        namespace: str,
        images: Mapping[str, Image],
        *,
        controller_config: dict[str, str] | None = None,
        services: Sequence[Service] = (),
        work_dir: Path | None = None,
    ) -> None:
        self.plane = plane
        self.namespace = namespace
        self.images = dict(images)
        self.controller_config = controller_config
        self.services = list(services)
        self._own_work_dir = work_dir is None
        self.work_dir = work_dir or Path(tempfile.mkdtemp(prefix="rtflow-events-"))
        self.nats = NatsServer(self.work_dir / "nats", hosts=(EVENT_BUS_HOST, "127.0.0.1"))
        self.controller_manager = ControllerManager(
            plane, log_path=self.work_dir / "kube-controller-manager.log"
        )
        self.networks: PodNetworks | None = None
        self.execution: ExecutionPlane | None = None

    def start(self) -> Self:
        bin_dir = default_bin_dir()
        for binary in ("argo-events", "nats-server", "kube-controller-manager"):
            if not os.access(bin_dir / binary, os.X_OK):
                raise ControlPlaneUnavailable(
                    f"{binary} not built in {bin_dir}: run tools/build-go-tools.sh {binary}"
                )
        assert self.plane.port is not None
        self.work_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.nats.start()
            self.controller_manager.start()
            api = Service((), self.plane.port, ("127.0.0.1", self.plane.port))
            bus = Service((EVENT_BUS_HOST,), EVENT_BUS_PORT, ("127.0.0.1", self.nats.port))
            self.networks = PodNetworks([api, bus, *self.services])
            images = {
                ARGO_EVENTS_IMAGE: Image(
                    entrypoint=["/rtflow-image/argo-events/argo-events"],
                    binds={str(bin_dir): "/rtflow-image/argo-events"},
                ),
                **self.images,
            }
            self.execution = ExecutionPlane(
                self.plane, self.namespace, images, controller_config=self.controller_config,
                work_dir=self.work_dir / "execution", networks=self.networks,
            ).start()  # fmt: skip
            self.execution.prepare_namespace([])  # kube-root-ca.crt, which every token mounts
            self.plane.apply([{
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": EVENT_BUS_CA, "namespace": self.namespace},
                "stringData": {"ca.crt": self.nats.ca_pem},
            }])  # fmt: skip
            self.plane.apply(install_manifests(self.namespace), namespace=self.namespace)
        except BaseException:
            self.close()
            raise
        return self

    def event_bus(self, name: str) -> dict[str, Any]:
        """The EventBus ``name`` as this tier has it: JetStream that Argo Events does not manage
        (``jetstreamExotic``), at the NATS server's Service name, its certificate checked
        against the CA in :data:`EVENT_BUS_CA`."""
        return {
            "apiVersion": "argoproj.io/v1alpha1", "kind": "EventBus",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"jetstreamExotic": {
                "url": f"nats://{EVENT_BUS_HOST}:{EVENT_BUS_PORT}",
                "streamConfig": STREAM_CONFIG,
                "tls": {"caCertSecret": {"name": EVENT_BUS_CA, "key": "ca.crt"}},
            }},
        }  # fmt: skip

    # -- waiting for Argo Events -------------------------------------------------------------

    def running_pod(self, label: str, value: str, timeout: float = 120.0) -> Any:
        """The Running pod labelled ``label=value`` (an EventSource's or a Sensor's pod)."""
        from kubernetes import client

        core = client.CoreV1Api(self.plane.api_client())
        deadline = time.monotonic() + timeout
        while True:
            pods: list[Any] = core.list_namespaced_pod(
                self.namespace, label_selector=f"{label}={value}"
            ).items
            for pod in pods:
                if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None:
                    return pod
            if time.monotonic() > deadline:
                raise TimeoutError(f"no Running pod {label}={value} after {timeout:g} s\n"
                                   + self.diagnostics())  # fmt: skip
            time.sleep(0.2)

    def forward(self, event_source: str, port: int, timeout: float = 120.0) -> int:
        """``kubectl port-forward`` to the EventSource's pod: the port of this machine's
        127.0.0.1 that reaches its ``port`` (its Service's target port)."""
        pod = self.running_pod("eventsource-name", event_source, timeout)
        assert self.networks is not None
        return self.networks.forward(pod.metadata.uid, port)

    def wait_subscribed(self, subject: str, count: int = 1, timeout: float = 120.0) -> None:
        """Until ``count`` durable consumers read ``subject`` of the bus (``<event source>.<event
        name>``): a Sensor's trigger reads only what is published after it subscribed."""
        deadline = time.monotonic() + timeout
        wanted = f"{STREAM}.{subject}"
        while True:
            found = [c for c in self.nats.consumers()
                     if (c.get("config") or {}).get("filter_subject") == wanted]  # fmt: skip
            if len(found) >= count:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"no consumer of {wanted} after {timeout:g} s\n"
                                   + self.diagnostics())  # fmt: skip
            time.sleep(0.2)

    def pod_logs(self, label: str, value: str) -> str:
        """The logs of the pods labelled ``label=value``, as the pod runner kept them."""
        from kubernetes import client

        assert self.execution is not None and self.execution.runner is not None
        core = client.CoreV1Api(self.plane.api_client())
        pods: list[Any] = core.list_namespaced_pod(
            self.namespace, label_selector=f"{label}={value}"
        ).items
        folder = self.execution.runner.work_dir
        return "\n".join(
            log.read_text(errors="replace")
            for pod in pods
            for log in sorted((folder / pod.metadata.name).glob("*.log"))
        )

    def diagnostics(self) -> str:
        """What to read when Argo Events does not get where a test waits for it."""
        from kubernetes import client

        lines = []
        with contextlib.suppress(Exception):
            core = client.CoreV1Api(self.plane.api_client())
            pods: list[Any] = core.list_namespaced_pod(self.namespace).items
            for pod in pods:
                lines.append(f"pod {pod.metadata.name}: {pod.status.phase}")
        if self.execution is not None and self.execution.runner is not None:
            lines += [f"runner: {e}" for e in self.execution.runner.errors[-5:]]
            for log in sorted(self.execution.runner.work_dir.glob("*/main.log"))[-4:]:
                lines.append(f"--- {log.parent.name}\n{log.read_text(errors='replace')[-1500:]}")
            for log in sorted(self.execution.runner.work_dir.glob("controller-manager-*/*.log")):
                lines.append(f"--- {log.parent.name}\n{log.read_text(errors='replace')[-1500:]}")
        lines.append(f"--- kube-controller-manager\n{self.controller_manager.log_tail(1500)}")
        return "\n".join(lines)

    # -- life cycle --------------------------------------------------------------------------

    def close(self) -> None:
        if self.execution is not None:
            self.execution.close()
        if self.networks is not None:
            self.networks.close()
        self.controller_manager.close()
        self.nats.close()
        if self._own_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        pids = list(self.execution.pids) if self.execution is not None else []
        if self.networks is not None:
            pids += self.networks.pids()
        for pid in (self.controller_manager.pid, self.nats.pid):
            if pid is not None:
                pids.append(pid)
        return pids
