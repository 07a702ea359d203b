"""Secure-by-default pod and container settings.

Every generated pod runs as a non-root user with a read-only root filesystem, no privilege
escalation, all capabilities dropped and the RuntimeDefault seccomp profile: what the Kubernetes
"restricted" Pod Security Standard requires. The read-only root needs somewhere to write, so
``/tmp`` is an emptyDir.
"""

from __future__ import annotations

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
