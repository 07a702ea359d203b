"""Secure-by-default pod and container settings.

Every generated pod runs as a non-root user with a read-only root filesystem, no privilege
escalation, all capabilities dropped and the RuntimeDefault seccomp profile: what the Kubernetes
"restricted" Pod Security Standard requires. The read-only root needs somewhere to write, so
``/tmp`` is an emptyDir.
"""

from __future__ import annotations

from typing import Any

from hera.workflows import models as m

from rtflow.stages import contract

NONROOT_UID = 65532
SCRATCH_VOLUME = "scratch"


def pod_security_context() -> m.PodSecurityContext:
    return m.PodSecurityContext(
        run_as_non_root=True,
        run_as_user=NONROOT_UID,
        run_as_group=NONROOT_UID,
        fs_group=NONROOT_UID,
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def container_security_context() -> m.SecurityContext:
    return m.SecurityContext(
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        capabilities=m.Capabilities(drop=["ALL"]),
        seccomp_profile=m.SeccompProfile(type="RuntimeDefault"),
    )


def scratch_volume() -> m.Volume:
    return m.Volume(name=SCRATCH_VOLUME, empty_dir=m.EmptyDirVolumeSource())


def scratch_mount() -> m.VolumeMount:
    return m.VolumeMount(name=SCRATCH_VOLUME, mount_path=contract.SCRATCH_DIR)


# Ephemeral storage (the writable layer, logs, emptyDirs such as /tmp): requested so the
# scheduler counts it, limited so one pod filling the node's disk is evicted rather than
# starving its neighbours. Per kind of pod, since what they write differs.
EPHEMERAL_STORAGE = {
    "stage": ("256Mi", "2Gi"),  # a stage's /tmp and its logs
    "stream-worker": ("128Mi", "1Gi"),  # logs only
    "events": ("64Mi", "256Mi"),  # Sensor and EventSource: logs only
    "triton": ("1Gi", "20Gi"),  # cloud repositories download models into /tmp
}


def resource_requirements(
    resources: Any, kind: str, *, extra: dict[str, Any] | None = None, storage_limit: str = ""
) -> m.ResourceRequirements:
    """Requests and limits of cpu, memory and ephemeral storage (``extra``: e.g. GPUs;
    ``storage_limit``: instead of the kind's default limit)."""
    request, limit = EPHEMERAL_STORAGE[kind]
    limit = storage_limit or limit
    requests = {
        "cpu": m.Quantity(resources.cpu_request),
        "ephemeral-storage": m.Quantity(request),
        "memory": m.Quantity(resources.memory_request),
        **(extra or {}),
    }
    limits = {
        "cpu": m.Quantity(resources.cpu_limit),
        "ephemeral-storage": m.Quantity(limit),
        "memory": m.Quantity(resources.memory_limit),
        **(extra or {}),
    }
    return m.ResourceRequirements(
        requests=dict(sorted(requests.items())), limits=dict(sorted(limits.items()))
    )


def spread_across_nodes(selector: dict[str, str]) -> dict[str, Any]:
    """A preferred pod anti-affinity: replicas land on different nodes when they can, so
    losing one node takes one replica, not all (preferred: a small cluster still schedules)."""
    return {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "labelSelector": {"matchLabels": dict(selector)},
                        "topologyKey": "kubernetes.io/hostname",
                    },
                }
            ]
        }
    }


# ``Always``, pinned by digest or not. A tag can move, so every start must ask the registry what
# it names; and whatever the reference, ``Always`` makes the kubelet check the pod's own pull
# credentials: with ``IfNotPresent`` any pod on a node may run a private image another pod
# pulled there (what the AlwaysPullImages admission plugin closes). For an image pinned by
# digest the check costs one manifest request: its layers are cached by digest, not downloaded
# again. kube-score (a CRITICAL) and checkov (CKV_K8S_15) ask for the same. The one exception
# is an environment whose nodes were given the images (``pull_images=False``, see overlays).
PULL_POLICY = "Always"
