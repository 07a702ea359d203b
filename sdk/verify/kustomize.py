"""Build a kustomization with the real kustomize, offline.

The binary is the kustomize CLI of ``sigs.k8s.io/kustomize/kustomize/v5`` at the release pinned
in ``tools/kustomize/go.mod``, built by ``tools/provision.sh`` (``tools/build-go-tools.sh``). It
is looked up in ``$RTFLOW_KUSTOMIZE``, then in the tools folder's ``bin/``
(:mod:`rtflow.verify.tools_home`), then on ``PATH`` (as
``kustomize``); a user's machine with neither but with ``kubectl`` gets ``kubectl kustomize``
(another kustomize release, embedded; the pinned one always wins where it is built, as in CI).
When none is there, :class:`KustomizeUnavailable` says where it looked and how to build it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import yaml

from rtflow.verify import tools_home
from rtflow.verify.argo_linters import GO_NEEDS, LinterError, run_tool, tools_bin
from rtflow.verify.loading import ManifestLoader, one_line

ENV_VAR = "RTFLOW_KUSTOMIZE"
BINARY = "kustomize"
BUILD_SCRIPT = "tools/provision.sh"
DEFAULT_TIMEOUT_S = 120.0
# kustomize's own default, spelt out: a kustomization may only load files under its own folder.
LOAD_RESTRICTOR = "LoadRestrictionsRootOnly"


class KustomizeError(LinterError):
    """kustomize could not build the folder (or could not run); the message has its stderr."""


class KustomizeUnavailable(KustomizeError):
    """The kustomize binary is not where rtflow looks for it; the message says how to build it."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        advice = tools_home.provision_advice(BUILD_SCRIPT, f"bin/{BINARY}", GO_NEEDS)
        super().__init__(
            f"kustomize is not available: {reason}; {advice}, or set {ENV_VAR} to the binary"
        )


def find_kustomize() -> Path:
    """The kustomize binary: from $RTFLOW_KUSTOMIZE, the tools folder, or PATH."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KustomizeUnavailable(f"{ENV_VAR}={override} is not an executable file")
        return path
    local = tools_bin() / BINARY
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(BINARY)
    if found is not None:
        return Path(found)
    raise KustomizeUnavailable(f"{ENV_VAR} is not set, and neither {local} nor PATH has {BINARY}")


def kustomize_command() -> list[str]:
    """The command that builds a folder given last: the kustomize binary, else kubectl's."""
    try:
        return [os.fspath(find_kustomize()), "build"]
    except KustomizeUnavailable:
        if os.environ.get(ENV_VAR):
            raise
        kubectl = shutil.which("kubectl")
        if kubectl is None:
            raise
        return [kubectl, "kustomize"]


def kustomize_build(folder: Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
    """``kustomize build FOLDER``: the objects it emits, in its order, as dicts.

    Raises :class:`KustomizeUnavailable` when there is no binary, and :class:`KustomizeError`
    naming the folder and kustomize's stderr when the build fails or prints what is not YAML.
    """
    command = [*kustomize_command(), f"--load-restrictor={LOAD_RESTRICTOR}", os.fspath(folder)]
    proc = run_tool(f"kustomize build {folder}", command, timeout, KustomizeError)
    if proc.returncode != 0:
        detail = proc.stderr.strip() or f"exit status {proc.returncode}, nothing on stderr"
        raise KustomizeError(f"kustomize build {folder} failed: {detail}")
    try:
        # kustomize writes YAML 1.2: the loader reads its bare "=" (see rtflow.verify.loading).
        documents = list(yaml.load_all(proc.stdout, Loader=ManifestLoader))
    except yaml.YAMLError as exc:
        raise KustomizeError(
            f"kustomize build {folder} printed what is not YAML: {one_line(exc)}"
        ) from exc
    objects: list[dict[str, Any]] = []
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise KustomizeError(
                f"kustomize build {folder} printed a {type(document).__name__}, not an object"
            )
        objects.append(document)
    return objects
