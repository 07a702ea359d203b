"""A real Kubernetes control plane on one machine: etcd and kube-apiserver as local processes.

What rtflow compiles is meant for an API server, and only a real one says whether it accepts it:
its OpenAPI validation of core kinds, the CRDs' own structural schemas (unknown fields, wrong
types), server-side apply, RBAC, admission. kind needs Docker; this needs neither containers nor
a kubelet: ``tools/build-go-tools.sh`` builds ``etcd`` and ``kube-apiserver`` from their Go
modules into ``.tools/bin`` (found as ``rtflow lint`` finds its tools), and
``tools/argo_schemas.py`` / ``tools/crd_schemas.py`` copy the upstream CRDs of the pinned
releases into ``.tools/schemas``.

Both listen on 127.0.0.1 only (etcd over plain HTTP on loopback; the API server over TLS with
a certificate made here, a static admin token, RBAC on). Pods do not run: there is no kubelet
(issue #15 adds the controllers and a process runner). :meth:`ControlPlane.close` stops both; a
test session that dies takes them along (parent-death signal).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self

from rtflow.stages.reaper import parent_death_signal, terminate_then_kill
from rtflow.stages.stream.launcher import free_port

CONTROL_PLANE_BINARIES = ("etcd", "kube-apiserver")


class ControlPlaneUnavailable(RuntimeError):
    """A binary or a Python package it needs is missing; nothing was started."""


def default_bin_dir() -> Path:
    from rtflow.verify import tools_home

    return tools_home.find().path / "bin"


def default_crd_files() -> list[Path]:
    """Every CRD the pinned upstream releases define, as the provisioning tools copied them."""
    from rtflow.verify import tools_home

    schemas = tools_home.find().path / "schemas"
    return sorted(schemas.glob("crds/*/*.yaml")) + sorted(schemas.glob("*/*.crd.yaml"))


def find_binaries(bin_dir: Path | None = None) -> dict[str, Path]:
    folder = bin_dir or default_bin_dir()
    found = {name: folder / name for name in CONTROL_PLANE_BINARIES}
    missing = [name for name, path in found.items() if not os.access(path, os.X_OK)]
    if missing:
        raise ControlPlaneUnavailable(
            f"{', '.join(missing)} not built in {folder}: run tools/build-go-tools.sh "
            "(or tools/provision.sh)"
        )
    return found


class ControlPlane:
    """etcd + kube-apiserver in a work folder of their own (temporary unless given)."""

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        bin_dir: Path | None = None,
        start_timeout: float = 120.0,
    ) -> None:
        self._work_arg = Path(work_dir) if work_dir is not None else None
        self._bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.work_dir: Path | None = None
        self.port: int | None = None
        self.token = secrets.token_urlsafe(24)
        # An authenticated user that no RBAC rule names: every request of it is forbidden.
        self.unprivileged_token = secrets.token_urlsafe(24)
        self._procs: list[subprocess.Popen[bytes]] = []
        self._finalizers: list[weakref.finalize[Any, Any]] = []
        self._ca_file: Path | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        binaries = find_binaries(self._bin_dir)
        try:
            import kubernetes  # noqa: F401
            import trustme
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import rsa
        except ImportError as exc:
            raise ControlPlaneUnavailable(f"a package the control plane needs: {exc}") from exc
        work = self._work_arg or Path(tempfile.mkdtemp(prefix="rtflow-control-plane-"))
        work.mkdir(parents=True, exist_ok=True)
        self.work_dir = work
        certs = work / "certs"
        certs.mkdir(exist_ok=True)
        ca = trustme.CA()
        serving = ca.issue_cert("127.0.0.1", "localhost", "kubernetes.default.svc")
        serving.cert_chain_pems[0].write_to_path(str(certs / "serving.crt"))
        serving.private_key_pem.write_to_path(str(certs / "serving.key"))
        ca.cert_pem.write_to_path(str(certs / "ca.crt"))
        self._ca_file = certs / "ca.crt"
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        (certs / "sa.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (certs / "sa.pub").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        # A static token for the test's admin: system:masters passes RBAC; other identities
        # (ServiceAccounts) are checked by RBAC as a cluster checks them.
        (certs / "tokens.csv").write_text(
            f'{self.token},rtflow-admin,1,"system:masters"\n'
            f"{self.unprivileged_token},rtflow-nobody,2\n"
        )

        etcd_client, etcd_peer = free_port(), free_port()
        self.port = free_port()
        self._spawn(
            "etcd",
            [
                str(binaries["etcd"]),
                "--name=rtflow",
                f"--data-dir={work / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
                f"--initial-cluster=rtflow=http://127.0.0.1:{etcd_peer}",
                "--unsafe-no-fsync",  # a test cluster: durability across power loss is moot
                "--log-level=warn",
            ],
        )
        self._spawn(
            "kube-apiserver",
            [
                str(binaries["kube-apiserver"]),
                f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.port}",
                f"--cert-dir={certs}",
                f"--tls-cert-file={certs / 'serving.crt'}",
                f"--tls-private-key-file={certs / 'serving.key'}",
                f"--token-auth-file={certs / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={certs / 'sa.pub'}",
                f"--service-account-signing-key-file={certs / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                # One API server and no Service network: it must not try to maintain the
                # kubernetes Service's endpoints on an address nothing routes to.
                "--endpoint-reconciler-type=none",
                "--enable-priority-and-fairness=false",
            ],
        )
        self._wait_ready()
        return self

    def close(self) -> None:
        for proc in reversed(self._procs):
            terminate_then_kill(proc, 15.0)
        for finalizer in self._finalizers:
            finalizer.detach()
        self._procs, self._finalizers = [], []
        if self._work_arg is None and self.work_dir is not None:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            self.work_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    @property
    def ca_file(self) -> Path:
        """The CA certificate the API server's serving certificate chains to."""
        if self._ca_file is None:
            raise RuntimeError("the control plane has not been started")
        return self._ca_file

    @property
    def server(self) -> str:
        if self.port is None:
            raise RuntimeError("the control plane has not been started")
        return f"https://127.0.0.1:{self.port}"

    # -- clients ---------------------------------------------------------------------------

    def api_client(self, token: str | None = None) -> Any:
        """A kubernetes ApiClient for this server, as the admin or as ``token``'s owner."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self._ca_file)
        config.api_key = {"authorization": f"Bearer {token or self.token}"}
        return client.ApiClient(config)

    def kubeconfig(self, path: Path, token: str | None = None) -> Path:
        """A kubeconfig file for this server and the admin token, or ``token``."""
        import yaml

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "rtflow", "cluster": {"server": self.server,
                                               "certificate-authority": str(self._ca_file)}}
            ],
            "users": [{"name": "admin", "user": {"token": token or self.token}}],
            "contexts": [{"name": "rtflow", "context": {"cluster": "rtflow", "user": "admin"}}],
            "current-context": "rtflow",
        }  # fmt: skip
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        return path

    def install_crds(self, files: Iterable[Path] | None = None, timeout: float = 60.0) -> list[str]:
        """Create each CRD and wait until the server serves it; returns their names."""
        import yaml
        from kubernetes import client

        api = client.ApiextensionsV1Api(self.api_client())
        names = []
        for path in default_crd_files() if files is None else files:
            # The libyaml loader: the full Argo CRDs are megabytes, and pure Python takes
            # seconds for each.
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            for doc in yaml.load_all(path.read_text(encoding="utf-8"), Loader=loader):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    api.create_custom_resource_definition(doc)
                    names.append(doc["metadata"]["name"])
        deadline = time.monotonic() + timeout
        for name in names:
            while True:
                crd = api.read_custom_resource_definition(name)
                status = crd.status
                conditions = {c.type: c.status for c in (status and status.conditions) or []}
                if conditions.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"CRD {name} not established after {timeout:g} s")
                time.sleep(0.1)
        return names

    def apply(
        self,
        docs: Iterable[Mapping[str, Any]],
        *,
        namespace: str = "default",
        dry_run: bool = False,
        token: str | None = None,
    ) -> list[Any]:
        """Server-side apply, with strict field validation (an unknown field is an error).
        A namespaced object with no namespace goes to ``namespace``, as ``kubectl apply -n``
        (or an Argo CD Application's destination) puts it."""
        from kubernetes.dynamic import DynamicClient

        dynamic = DynamicClient(self.api_client(token))  # type: ignore[no-untyped-call]
        applied = []
        for doc in docs:
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
            applied.append(
                dynamic.server_side_apply(  # type: ignore[no-untyped-call]
                    resource,
                    body=dict(doc),
                    namespace=doc.get("metadata", {}).get("namespace") or namespace,
                    field_manager="rtflow",
                    force_conflicts=True,
                    dry_run="All" if dry_run else None,
                    query_params=[("fieldValidation", "Strict")],
                )
            )
        return applied

    # -- internals ---------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str]) -> None:
        assert self.work_dir is not None
        with (self.work_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                preexec_fn=parent_death_signal(),
            )
        self._procs.append(proc)
        self._finalizers.append(weakref.finalize(self, terminate_then_kill, proc, 15.0))

    def _wait_ready(self) -> None:
        import urllib3

        assert self.work_dir is not None
        http = urllib3.PoolManager(ca_certs=str(self._ca_file), timeout=2.0, retries=False)
        deadline = time.monotonic() + self.start_timeout
        while True:
            for proc, name in zip(self._procs, CONTROL_PLANE_BINARIES, strict=True):
                if proc.poll() is not None:
                    tail = (self.work_dir / f"{name}.log").read_text(errors="replace")[-3000:]
                    self.close()
                    raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")
            try:
                answer = http.request(
                    "GET", f"{self.server}/readyz",
                    headers={"Authorization": f"Bearer {self.token}"},
                )  # fmt: skip
                if answer.status == 200:
                    return
            except urllib3.exceptions.HTTPError:
                pass
            if time.monotonic() > deadline:
                tail = (self.work_dir / "kube-apiserver.log").read_text(errors="replace")[-3000:]
                self.close()
                raise RuntimeError(f"kube-apiserver not ready in {self.start_timeout:g} s:\n{tail}")
            time.sleep(0.2)
