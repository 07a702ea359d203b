"""A kubelet for the pods Argo's workflow-controller creates, running their containers as local
processes: the execution tier of :mod:`rtflow.testing.workflow_controller`.

There is no kubelet and no container runtime here, so nothing would ever run the pods the real
controller creates. :class:`PodRunner` watches the pods of one namespace through the API server
and plays the kubelet's part, and only that part:

- **volumes**: each pod volume becomes a folder of the pod (``emptyDir``; ``secret``,
  ``configMap``, ``downwardAPI`` and ``projected`` ones with their files written from the real
  objects the API server holds; a ``serviceAccountToken`` projection from the TokenRequest API,
  as a kubelet gets it); ``subPath`` as a kubelet resolves it. While a Secret or ConfigMap a
  volume needs does not exist the pod stays Pending (ContainerCreating, the reason in its
  status), tried again each second, as a kubelet retries a mount;
- **containers**: the init containers in order, then the containers together, each as a
  process (:mod:`rtflow.testing.pod_sandbox`) in the pod network namespace (the one the
  workflow-controller runs in, reaching the API server through its bridge; or, given
  :class:`~rtflow.testing.pod_network.PodNetworks`, a namespace of the pod's own) and a mount
  namespace of its own, chrooted to a bind of this machine's ``/`` with the pod's volumes
  mounted at their mount paths; the container's
  ``env`` (values, ``fieldRef``, ``secretKeyRef``, ``configMapKeyRef``) plus the
  ``KUBERNETES_SERVICE_*`` variables a kubelet adds;
- **status**: the pod's phase and every container's state (running, then terminated with its
  exit code) written to the pod's status subresource, as the kubelet reports them;
- **clean-up**: a deleted pod's processes are killed and its volumes removed (its logs stay in
  its folder; :meth:`PodRunner.close` does the same for every pod).

Argo's own side of a pod is **not emulated**: the controller puts Argo's executor into every
pod (``argoexec init`` copies itself to ``/var/run/argo``, the main container runs ``argoexec
emissary -- <the template's command>``, ``argoexec wait`` collects the outputs and writes the
``WorkflowTaskResult`` with the pod ServiceAccount's token, and the agent pod's ``argoexec agent``
makes the http steps' calls and patches the ``WorkflowTaskSet``). The runner runs that real
``argoexec`` (``tools/build-go-tools.sh argoexec``) for the executor image.

What stands in for a container image is an :class:`Image`: this machine's root file system with
the environment the image would set (``PATH`` to this virtualenv, ``PYTHONPATH`` to the
pipeline's modules, as the stage image holds them), and, for an image whose own binaries are
not on this machine (a user's ``/card-actions``), stand-in commands a test names explicitly.
An image the runner is not given is reported as a kubelet reports an image it cannot pull
(``ErrImagePull``), and the pod stays Pending.

Not played: scheduling and nodes (a pod is run as soon as it is seen), resource limits,
``securityContext`` (the processes run as this user), probes, image pulls, restarts of a
``restartPolicy: OnFailure`` pod (the agent's), a pod's ``activeDeadlineSeconds`` (argoexec's
own deadline monitor still stops the main container at ``ARGO_DEADLINE``), Services (a test
maps a Service's name to a bridge of the namespace:
:meth:`rtflow.testing.netns.NetworkNamespace.add_host`).
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from rtflow.testing.control_plane import ControlPlane
from rtflow.testing.netns import NetworkNamespace
from rtflow.testing.pod_network import PodNetworks

PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Image:
    """What stands in for a container image: this machine's file system, plus ``env`` (what
    the image's ENV sets; the container's own env wins), ``commands`` (a program of the
    image that is not on this machine -> the stand-in argv that replaces it) and ``binds``
    (a folder of this machine -> where the image holds it, read-only, at a path this machine
    does not have, such as ``/rtflow-image/venv``). Binds are what an image brings with it: a
    pod's volume on ``/tmp`` (rtflow's stage containers have one) would hide a virtualenv or a
    checkout that lives under this machine's ``/tmp``, as a CI clone does. ``entrypoint`` is
    the image's ENTRYPOINT: what runs, before the container's ``args``, for a container with
    no ``command`` (Argo Events' pods name only their subcommand)."""

    env: Mapping[str, str] = field(default_factory=dict)
    commands: Mapping[str, Sequence[str]] = field(default_factory=dict)
    binds: Mapping[str, str] = field(default_factory=dict)
    entrypoint: Sequence[str] = ()


def repository(image: str) -> str:
    """``ghcr.io/acme/x:1.0`` and ``ghcr.io/acme/x@sha256:...`` -> ``ghcr.io/acme/x``."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pod:
    name: str
    uid: str
    folder: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    deleted: threading.Event = field(default_factory=threading.Event)


class PodRunner:
    """Runs the pods of ``namespace`` as processes in ``netns`` (see the module docstring)."""

    def __init__(
        self,
        plane: ControlPlane,
        netns: NetworkNamespace,
        namespace: str,
        images: Mapping[str, Image],
        work_dir: Path,
        networks: PodNetworks | None = None,
    ) -> None:
        self.plane = plane
        self.netns = netns
        self.networks = networks
        self.namespace = namespace
        self.images = dict(images)
        self.work_dir = work_dir
        self._pods: dict[str, _Pod] = {}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watch: Any = None
        self.errors: list[str] = []

    def start(self) -> Self:
        from kubernetes import client

        self._core = client.CoreV1Api(self.plane.api_client())
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._watcher = threading.Thread(target=self._watch_pods, name="pod-runner", daemon=True)
        self._watcher.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        with self._lock:
            pods = list(self._pods.values())
        for pod in pods:
            pod.deleted.set()
            _kill_all(pod)
        for thread in self._threads:
            thread.join(30)
        if self._watcher is not None:
            self._watcher.join(10)
        for pod in pods:
            self._release(pod)

    def _release(self, pod: _Pod) -> None:
        _release(pod)
        if self.networks is not None:
            self.networks.release(pod.uid)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        with self._lock:
            pods = list(self._pods.values())
        return [p.pid for pod in pods for p in pod.procs.values() if p.poll() is None]

    # -- the watch -------------------------------------------------------------------------

    def _watch_pods(self) -> None:
        from kubernetes import watch

        version = ""
        while not self._stop.is_set():
            self._watch = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in self._watch.stream(
                    self._core.list_namespaced_pod, self.namespace,
                    resource_version=version or None, timeout_seconds=30,
                ):  # fmt: skip
                    pod = event["object"]
                    version = pod.metadata.resource_version
                    self._on_event(event["type"], pod)
                    if self._stop.is_set():
                        return
            except Exception as exc:  # a dropped watch: list again from the start
                if self._stop.is_set():
                    return
                version = ""
                self.errors.append(f"watch: {exc}")

    def _on_event(self, kind: str, pod: Any) -> None:
        uid = pod.metadata.uid
        with self._lock:
            known = self._pods.get(uid)
            if kind == "DELETED" or pod.metadata.deletion_timestamp is not None:
                if known is not None and not known.deleted.is_set():
                    known.deleted.set()
                    _kill_all(known)
                    threading.Thread(target=self._release, args=(known,), daemon=True).start()
                return
            if known is not None or pod.status.phase not in (None, "Pending"):
                return
            folder = self.work_dir / pod.metadata.name
            state = _Pod(pod.metadata.name, uid, folder)
            self._pods[uid] = state
            thread = threading.Thread(
                target=self._run, args=(pod, state), name=f"pod-{pod.metadata.name}", daemon=True
            )
            self._threads.append(thread)
        thread.start()

    # -- one pod ---------------------------------------------------------------------------

    def _run(self, pod: Any, state: _Pod) -> None:
        try:
            self._run_pod(pod, state)
        except Exception as exc:
            self.errors.append(f"{state.name}: {exc!r}")
            with contextlib.suppress(Exception):
                self._patch_status(state, {"phase": "Failed", "message": f"pod runner: {exc}"})

    def _run_pod(self, pod: Any, state: _Pod) -> None:
        spec = pod.spec
        for container in [*(spec.init_containers or []), *spec.containers]:
            if repository(container.image) not in self.images:
                self._patch_status(state, {
                    "phase": "Pending",
                    "containerStatuses": [
                        _status(c, {"waiting": {"reason": "ErrImagePull",
                                                "message": f"{c.image}: not known to the runner"}})
                        for c in spec.containers
                    ],
                })  # fmt: skip
                return
        state.folder.mkdir(parents=True, exist_ok=True)
        volumes = self._volumes(pod, state)
        if volumes is None:  # deleted while its volumes could not be made
            return
        started = _now()
        address = {"hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}
        self._patch_status(state, {"phase": "Pending", "startTime": started, **address})
        init_states = []
        for container in spec.init_containers or []:
            begun = _now()
            code = self._start(pod, state, container, volumes).wait()
            init_states.append(_status(container, _terminated(code, begun)))
            if code != 0 or state.deleted.is_set():
                self._patch_status(state, {"phase": "Failed", "initContainerStatuses": init_states})
                return
        begun = _now()
        procs = {c.name: self._start(pod, state, c, volumes) for c in spec.containers}
        self._patch_status(state, {
            "phase": "Running",
            "initContainerStatuses": init_states,
            "containerStatuses": [
                _status(c, {"running": {"startedAt": begun}}, ready=True) for c in spec.containers
            ],
        })  # fmt: skip
        codes = {name: proc.wait() for name, proc in procs.items()}
        if state.deleted.is_set():
            return
        statuses = [
            _status(c, _terminated(codes[c.name], begun, self._message(c, volumes)))
            for c in spec.containers
        ]
        failed = any(code != 0 for code in codes.values())
        self._patch_status(state, {
            "phase": "Failed" if failed else "Succeeded",
            "initContainerStatuses": init_states,
            "containerStatuses": statuses,
        })  # fmt: skip

    def _volumes(self, pod: Any, state: _Pod) -> dict[str, Path] | None:
        """The pod's volumes; while a Secret or ConfigMap they need does not exist, the pod
        stays Pending (ContainerCreating, the reason in its status) and is tried again each
        second, as a kubelet retries a mount."""
        from kubernetes.client.exceptions import ApiException

        reported = ""
        while not state.deleted.is_set() and not self._stop.is_set():
            try:
                return {v.name: self._volume(pod, v, state.folder / "volumes" / v.name)
                        for v in pod.spec.volumes or []}  # fmt: skip
            except ApiException as exc:
                if exc.status != 404:
                    raise
                message = f"MountVolume.SetUp failed: {exc.reason}: {exc.body}"[:500]
                if message != reported:
                    waiting = {"waiting": {"reason": "ContainerCreating", "message": message}}
                    self._patch_status(state, {
                        "phase": "Pending",
                        "containerStatuses": [_status(c, waiting) for c in pod.spec.containers],
                    })  # fmt: skip
                    reported = message
            state.deleted.wait(1.0)
        return None

    def _patch_status(self, state: _Pod, status: dict[str, Any]) -> None:
        if state.deleted.is_set():
            return
        from kubernetes.client.exceptions import ApiException

        try:
            self._core.patch_namespaced_pod_status(state.name, self.namespace, {"status": status})
        except ApiException as exc:
            if exc.status != 404:  # a pod deleted meanwhile (podGC) has no status to report
                raise

    def _message(self, container: Any, volumes: dict[str, Path]) -> str:
        """The container's termination message (its terminationMessagePath, as mounted)."""
        path = container.termination_message_path or "/dev/termination-log"
        for mount in container.volume_mounts or []:
            if path.startswith(mount.mount_path.rstrip("/") + "/"):
                local = volumes[mount.name] / (mount.sub_path or "")
                local = local / path[len(mount.mount_path) :].lstrip("/")
                with contextlib.suppress(OSError):
                    return local.read_text(errors="replace")[:4096]
        return ""

    # -- containers ------------------------------------------------------------------------

    def _start(
        self, pod: Any, state: _Pod, container: Any, volumes: dict[str, Path]
    ) -> subprocess.Popen[bytes]:
        image = self.images[repository(container.image)]
        argv = [*(container.command or image.entrypoint), *(container.args or [])]
        if not argv:
            raise RuntimeError(f"{container.name}: no command, and the image's is not known")
        argv = _stand_in(argv, image)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOSTNAME": pod.metadata.name, "HOME": "/root",
               **image.env, **self._service_env(), **self._env(pod, container)}  # fmt: skip
        mounts = [[source, target, True] for source, target in sorted(image.binds.items())]
        for mount in container.volume_mounts or []:
            source = volumes[mount.name]
            if mount.sub_path:
                source = source / mount.sub_path
                if not source.exists():  # a kubelet makes a missing subPath a folder
                    source.mkdir(parents=True)
            mounts.append([str(source), mount.mount_path, bool(mount.read_only)])
        spec_file = state.folder / f"{container.name}.json"
        spec_file.write_text(json.dumps(
            {"root": str(state.folder / "roots" / container.name), "mounts": mounts, "argv": argv,
             "env": env, "cwd": container.working_dir or "/"}
        ))  # fmt: skip
        log = (state.folder / f"{container.name}.log").open("ab")
        netns = self.netns if self.networks is None else self.networks.for_pod(state.uid)
        with log:
            proc = subprocess.Popen(
                [*netns.exec_prefix(), sys.executable, "-m", "rtflow.testing.pod_sandbox",
                 str(spec_file)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": os.environ.get("PATH", ""),
                     "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)},
                start_new_session=True, preexec_fn=_die_with_thread,
            )  # fmt: skip
        state.procs[container.name] = proc
        return proc

    def _service_env(self) -> dict[str, str]:
        """What a kubelet gives every container for the ``kubernetes`` Service: the API server
        (through the namespace's bridge, at the same address and port)."""
        port = str(self.plane.port)
        return {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port}  # fmt: skip

    def _env(self, pod: Any, container: Any) -> dict[str, str]:
        env: dict[str, str] = {}
        for var in container.env or []:
            if var.value_from is None:
                env[var.name] = _expand(var.value or "", env)
                continue
            source = var.value_from
            if source.field_ref is not None:
                env[var.name] = _field(pod, source.field_ref.field_path)
            elif source.secret_key_ref is not None:
                ref = source.secret_key_ref
                secret = self._core.read_namespaced_secret(ref.name, self.namespace)
                env[var.name] = base64.b64decode((secret.data or {})[ref.key]).decode()
            elif source.config_map_key_ref is not None:
                ref = source.config_map_key_ref
                config = self._core.read_namespaced_config_map(ref.name, self.namespace)
                env[var.name] = (config.data or {})[ref.key]
            else:
                raise RuntimeError(f"{container.name}: env {var.name}: source not supported")
        return env

    # -- volumes ---------------------------------------------------------------------------

    def _volume(self, pod: Any, volume: Any, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        if volume.empty_dir is not None:
            return folder
        if volume.secret is not None:
            self._secret_files(volume.secret.secret_name, volume.secret.items, folder)
        elif volume.config_map is not None:
            self._config_map_files(volume.config_map.name, volume.config_map.items, folder)
        elif volume.downward_api is not None:
            self._downward_files(pod, volume.downward_api.items, folder)
        elif volume.projected is not None:
            for source in volume.projected.sources or []:
                if source.secret is not None:
                    self._secret_files(source.secret.name, source.secret.items, folder)
                elif source.config_map is not None:
                    self._config_map_files(source.config_map.name, source.config_map.items, folder)
                elif source.downward_api is not None:
                    self._downward_files(pod, source.downward_api.items, folder)
                elif source.service_account_token is not None:
                    token = self._token(pod, source.service_account_token)
                    _write(folder / source.service_account_token.path, token.encode())
                else:
                    raise RuntimeError(f"volume {volume.name}: projection not supported")
        else:
            raise RuntimeError(f"volume {volume.name}: kind not supported by the pod runner")
        return folder

    def _secret_files(self, name: str, items: Any, folder: Path) -> None:
        secret = self._core.read_namespaced_secret(name, self.namespace)
        data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        _write_items(data, items, folder)

    def _config_map_files(self, name: str, items: Any, folder: Path) -> None:
        config = self._core.read_namespaced_config_map(name, self.namespace)
        data = {k: v.encode() for k, v in (config.data or {}).items()}
        _write_items(data, items, folder)

    def _downward_files(self, pod: Any, items: Any, folder: Path) -> None:
        for item in items or []:
            if item.field_ref is None:
                raise RuntimeError(f"downwardAPI {item.path}: only fieldRef is supported")
            _write(folder / item.path, _field(pod, item.field_ref.field_path).encode())

    def _token(self, pod: Any, projection: Any) -> str:
        from kubernetes import client

        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[projection.audience] if projection.audience else [],
                expiration_seconds=projection.expiration_seconds or 3600,
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=pod.metadata.name, uid=pod.metadata.uid
                ),
            )
        )
        account = pod.spec.service_account_name or "default"
        answer = self._core.create_namespaced_service_account_token(
            account, self.namespace, request
        )
        assert answer.status is not None
        return str(answer.status.token)


# -- helpers ---------------------------------------------------------------------------------


def _stand_in(argv: list[str], image: Image) -> list[str]:
    """The image's own program replaced by its stand-in: the command itself, or the one
    ``argoexec emissary ... -- PROGRAM ...`` starts."""
    at = argv.index("--") + 1 if "emissary" in argv[:2] and "--" in argv else 0
    if at < len(argv) and argv[at] in image.commands:
        return [*argv[:at], *image.commands[argv[at]], *argv[at + 1 :]]
    return argv


def _status(container: Any, state: dict[str, Any], *, ready: bool = False) -> dict[str, Any]:
    return {"name": container.name, "image": container.image, "imageID": "", "ready": ready,
            "restartCount": 0, "started": "running" in state, "state": state}  # fmt: skip


def _terminated(code: int, started: str, message: str = "") -> dict[str, Any]:
    code = code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a runtime says
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                           "startedAt": started, "finishedAt": _now(),
                           **({"message": message} if message else {})}}  # fmt: skip


def _field(pod: Any, path: str) -> str:
    meta = pod.metadata
    simple = {"metadata.name": meta.name, "metadata.namespace": meta.namespace,
              "metadata.uid": meta.uid, "spec.serviceAccountName": pod.spec.service_account_name,
              "spec.nodeName": "rtflow-pod-runner", "status.podIP": "127.0.0.1",
              "status.hostIP": "127.0.0.1"}  # fmt: skip
    if path in simple:
        return str(simple[path] or "")
    for prefix, values in (("metadata.labels", meta.labels), ("metadata.annotations",
                                                               meta.annotations)):  # fmt: skip
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted((values or {}).items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str((values or {}).get(path[len(prefix) + 2 : -2], ""))
    raise RuntimeError(f"fieldRef {path}: not supported by the pod runner")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """``$(VAR)`` references to variables defined before, as a kubelet expands them."""
    for name, val in env.items():
        value = value.replace(f"$({name})", val)
    return value


def _write_items(data: Mapping[str, bytes], items: Any, folder: Path) -> None:
    if items:
        for item in items:
            _write(folder / item.path, data[item.key])
    else:
        for key, value in data.items():
            _write(folder / key, value)


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


_prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up once, never in a forked child


def _die_with_thread() -> None:
    """The container dies with the runner thread that waits for it (and so with the test
    session: its threads end with it)."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _kill_all(pod: _Pod) -> None:
    for proc in pod.procs.values():
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def _release(pod: _Pod) -> None:
    """A deleted pod's volumes go, as a kubelet removes them (each pod's ``/var/run/argo``
    holds its own copy of argoexec, a hundred megabytes); its logs stay."""
    for proc in pod.procs.values():
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(30)
    shutil.rmtree(pod.folder / "volumes", ignore_errors=True)
    shutil.rmtree(pod.folder / "roots", ignore_errors=True)
