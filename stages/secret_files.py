"""Credentials given to a stage as files, seen by its function as environment variables.

A compiled template mounts each ``rtflow.Secret`` of a stage as a read-only file under
:data:`contract.SECRETS_DIR` and sets ``<ENV>_FILE`` to its path (``<ENV>`` itself only with
``as_env=True``): the value never sits in the pod's environment, where ``kubectl describe``,
``/proc/<pid>/environ``, crash reporters and every child process could read it. A container
stage (a user's image) reads the file itself, as the postgres and mysql images do with their
``*_FILE`` variables.

A Python-function stage is rtflow's own runtime, so it does the reading: before it imports the
stage's module, every ``<ENV>_FILE`` pointing inside :data:`contract.SECRETS_DIR` becomes
``<ENV>`` in the process's environment, with the file's exact content (as a ``secretKeyRef``
variable would have it). Code written against ``os.environ["API_TOKEN"]`` works either way.
A variable that is already set is left alone, and a ``*_FILE`` elsewhere (``LOG_FILE=/tmp/x``)
is not a credential rtflow mounted: it is not read.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from rtflow.credentials import inside
from rtflow.stages import contract


def load(environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Set ``<ENV>`` from every mounted ``<ENV>_FILE``; the names set, sorted. An unreadable
    file raises OSError (the mount is broken: the pod should fail, and be retried)."""
    env = os.environ if environ is None else environ
    loaded = []
    for variable, path in sorted(env.items()):
        name = variable.removesuffix(contract.FILE_SUFFIX)
        if name == variable or not name or name in env:
            continue
        if not inside(path, [contract.SECRETS_DIR]):
            continue
        # Bytes as the Secret holds them (a trailing newline included, as secretKeyRef gives
        # it); surrogateescape keeps bytes that are not UTF-8 as they are, as os.environ does.
        env[name] = Path(path).read_bytes().decode("utf-8", "surrogateescape")
        loaded.append(name)
    return loaded
