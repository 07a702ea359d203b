"""Build a kustomization with the real kustomize, offline.

The binary is the kustomize CLI of ``sigs.k8s.io/kustomize/kustomize/v5`` at the release pinned
in ``tools/kustomize/go.mod``, built by ``tools/provision.sh`` (``tools/build-go-tools.sh``). It
is looked up in ``$RTFLOW_KUSTOMIZE``, then in ``<repo>/.tools/bin``, then on ``PATH`` (as
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

from rtflow.verify.argo_linters import TOOLS_BIN, LinterError, run_tool


class _Yaml12Strings(yaml.SafeLoader):
    """kustomize writes YAML 1.2, where a bare ``=`` (a sensor filter's comparator) is a string;
    PyYAML's YAML 1.1 reads it as the obsolete ``!!value`` type and fails."""


def _value_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a scalar, found {type(node).__name__}", node.start_mark
        )
    return loader.construct_scalar(node)


_Yaml12Strings.add_constructor("tag:yaml.org,2002:value", _value_as_string)

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
        super().__init__(
            f"kustomize is not available: {reason}; build it with `{BUILD_SCRIPT}` (needs Go "
            f"1.26 and the Go module proxy; it writes {TOOLS_BIN / BINARY} from "
            f"tools/kustomize), or set {ENV_VAR} to the binary"
        )


def find_kustomize() -> Path:
    """The kustomize binary: from $RTFLOW_KUSTOMIZE, .tools/bin, or PATH."""
    override = os.environ.get(ENV_VAR)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KustomizeUnavailable(f"{ENV_VAR}={override} is not an executable file")
        return path
    local = TOOLS_BIN / BINARY
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
        documents = list(yaml.load_all(proc.stdout, Loader=_Yaml12Strings))
    except yaml.YAMLError as exc:
        raise KustomizeError(f"kustomize build {folder} printed what is not YAML: {exc}") from exc
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
