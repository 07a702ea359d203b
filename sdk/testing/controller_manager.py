"""The real kube-controller-manager against :mod:`rtflow.testing.control_plane`'s API server, with
only the controllers a pod runner's namespace needs: Deployments -> ReplicaSets -> Pods.

``tools/build-go-tools.sh kube-controller-manager`` builds it from ``k8s.io/kubernetes``
(the same wrapper pins as ``kube-apiserver``: its staging modules replaced by their releases,
the version stamped). It runs here with three controllers and nothing else:

- ``deployment-controller``: a Deployment's ReplicaSet, rolled as the Deployment's strategy says;
- ``replicaset-controller``: a ReplicaSet's pods, made from its template and owned by it;
- ``serviceaccount-controller``: the ``default`` ServiceAccount of every namespace (a pod whose
  template names no account runs as ``default``, and the API server's ServiceAccount admission
  refuses a pod whose account does not exist: an Argo Events EventSource without
  ``template.serviceAccountName`` would never get a pod).

The pods it makes are run by :class:`~rtflow.testing.pod_runner.PodRunner` (no kubelet here),
which writes their status as a kubelet does; the Deployment controller reads those statuses
for the Deployment's ``availableReplicas``. Leader election is off (one instance), its HTTPS
endpoint is off (``--secure-port=0``: nothing scrapes it, and a fixed port could collide), and it
talks to the API server with the admin's token (the control plane's authentication is a token
file; a cluster gives it an identity of its own and ``system:kube-controller-manager``'s
rights). :meth:`ControllerManager.close` stops it (SIGTERM, then SIGKILL); a test session that
dies takes it along (parent-death signal).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Self

from rtflow.stages.reaper import parent_death_signal
from rtflow.testing.control_plane import ControlPlane, ControlPlaneUnavailable, default_bin_dir
from rtflow.testing.supervised import SupervisedProcess, terminate

CONTROLLERS = ("deployment-controller", "replicaset-controller", "serviceaccount-controller")


class ControllerManager(SupervisedProcess):
    """kube-controller-manager with :data:`CONTROLLERS` only."""

    def __init__(
        self, plane: ControlPlane, *, bin_dir: Path | None = None, log_path: Path | None = None
    ) -> None:
        super().__init__()
        self.plane = plane
        self._bin_dir = bin_dir
        self.log_path = log_path

    def start(self) -> Self:
        binary = (self._bin_dir or default_bin_dir()) / "kube-controller-manager"
        if not os.access(binary, os.X_OK):
            raise ControlPlaneUnavailable(
                f"kube-controller-manager not built in {binary.parent}: run "
                "tools/build-go-tools.sh kube-controller-manager"
            )
        plane = self.plane
        assert plane.work_dir is not None
        kubeconfig = plane.kubeconfig(plane.work_dir / "kube-controller-manager.kubeconfig")
        self.log_path = self.log_path or plane.work_dir / "kube-controller-manager.log"
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(binary), f"--kubeconfig={kubeconfig}",
                 f"--controllers={','.join(CONTROLLERS)}", "--leader-elect=false",
                 "--secure-port=0", "--concurrent-deployment-syncs=2",
                 "--concurrent-replicaset-syncs=2", "--v=1"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=plane.work_dir, preexec_fn=parent_death_signal(),
            )  # fmt: skip
        self._supervise(proc, terminate)
        return self
