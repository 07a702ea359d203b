"""Secrets mounted as files: the one way rtflow's generators hand a pod a credential.

Every credential a generated pod receives (a stage's ``rtflow.Secret``, the stream workers'
Kafka TLS and SASL, Triton's cloud credentials and admin key) is a file in a read-only
projected volume, one Secret key per file, mode 0440 (the pod's group, which is its fsGroup,
reads it; nobody writes): not an environment variable, which ``kubectl describe``, the
process's ``/proc/<pid>/environ``, crash reporters and every child process can read. The
variable that points at it holds a path, which :mod:`rtflow.credentials` (rtflow lint's rule
too) takes for a reference only inside the container's own mounts: the mount and the path come
from here, so what the compiler writes and what lint accepts agree by construction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from hera.workflows import models as m

MODE = 0o440


class Key(Protocol):
    """A key of a Secret (``rtflow.SecretKey``, the IR's ``SecretKey``)."""

    @property
    def secret(self) -> str: ...

    @property
    def key(self) -> str: ...


def volume(name: str, files: Iterable[tuple[str, Key]]) -> m.Volume | None:
    """One projected volume of ``(path in the volume, Secret key)`` files, or None for none.

    A Secret key named twice is one file; sources and items are sorted (deterministic)."""
    by_secret: dict[str, dict[str, str]] = {}
    for path, key in files:
        by_secret.setdefault(key.secret, {})[path] = key.key
    if not by_secret:
        return None
    return m.Volume(
        name=name,
        projected=m.ProjectedVolumeSource(
            default_mode=MODE,
            sources=[
                m.VolumeProjection(
                    secret=m.SecretProjection(
                        name=secret,
                        items=[
                            m.KeyToPath(key=key, path=path) for path, key in sorted(items.items())
                        ],
                    )
                )
                for secret, items in sorted(by_secret.items())
            ],
        ),
    )


def mount(name: str, folder: str) -> m.VolumeMount:
    """The volume, read-only, at ``folder``."""
    return m.VolumeMount(name=name, mount_path=folder, read_only=True)
