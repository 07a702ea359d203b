"""Triton's administrative API, closed by default.

Triton serves more than inference on its HTTP and gRPC ports: loading and unloading models
(``POST /v2/repository/models/<m>/unload``), reading and changing model configuration,
registering shared-memory regions, changing log and trace settings. Anyone who reaches the
port may call them: an unload took a model offline in one request. Triton's own answer is the
restricted API (``--http-restricted-api`` / ``--grpc-restricted-protocol``): the listed
categories answer only requests that carry a given header with a given value.

rtflow restricts every category a pipeline does not need (it needs health, metadata and
inference) on both protocols. The header's value:

* by default, random, drawn when the container starts and never stored anywhere: nobody can
  call those endpoints, and no Secret has to exist first;
* with ``admin_key=rtflow.SecretKey(secret, key)`` on the server, the Secret's value, mounted
  as a file (read-only, 0440) and read when the container starts: for an operator's or a
  controller's own tooling (header ``triton-admin-key``).

Triton takes the value only on its command line, so the container runs ``/bin/sh -c`` to read
it and then ``exec``s ``tritonserver`` with the generated arguments unchanged (the server is
still the container's process, signals and exit code untouched).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from hera.workflows import models as m

from rtflow.generators import secret_files

RESTRICTED = ("model-repository", "model-config", "shared-memory", "statistics", "trace", "logging")
"""What a pipeline never calls: everything but health, metadata and inference."""
HEADER = "triton-admin-key"
KEY_DIR = "/var/run/secrets/rtflow/triton-admin"
VOLUME = "triton-admin-key"
RANDOM_KEY = "od -An -N32 -tx1 /dev/urandom | tr -d ' \\n'"


def restricted_flags(key_variable: str = "key") -> list[str]:
    """The two flags, with the value taken from a shell variable."""
    categories = ",".join(RESTRICTED)
    value = f'{HEADER}="${key_variable}"'
    return [
        f"--http-restricted-api={categories}:{value}",
        f"--grpc-restricted-protocol={categories}:{value}",
    ]


def launch(admin_key: Any | None) -> list[str]:
    """The container's ``command``: reads the key, then runs ``tritonserver`` with the
    container's ``args`` (``"$@"``) and the restricted-API flags."""
    read = f"cat {shlex.quote(f'{KEY_DIR}/{admin_key.key}')}" if admin_key else RANDOM_KEY
    script = f'key="$({read})" && exec tritonserver "$@" ' + " ".join(restricted_flags())
    return ["/bin/sh", "-c", script, "tritonserver"]


def volumes(admin_key: Any | None) -> list[m.Volume]:
    volume = secret_files.volume(VOLUME, [(admin_key.key, admin_key)] if admin_key else [])
    return [volume] if volume is not None else []


def mounts(admin_key: Any | None) -> Sequence[m.VolumeMount]:
    return [secret_files.mount(VOLUME, KEY_DIR)] if admin_key is not None else []
