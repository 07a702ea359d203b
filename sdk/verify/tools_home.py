"""Where rtflow's verify tools live: the Argo linters, kustomize and the upstream schemas.

``tools/provision.sh`` builds and fetches them into ``<checkout>/.tools`` (``bin/`` for the
binaries, ``schemas/`` for the JSON schemas). Looking for that folder next to the imported
package only works in an editable install: a normal install puts rtflow in site-packages, far
from any checkout, and lint then looked for ``site-packages/.tools`` and advised a script path
that did not exist. So the folder is found the same way in both install modes, first match wins:

1. ``$RTFLOW_TOOLS``: a folder laid out like ``<checkout>/.tools``;
2. ``.tools`` of the rtflow checkout the package is imported from (an editable install);
3. ``.tools`` of the rtflow checkout holding the current folder (a normal install, used from
   a checkout);
4. the user cache folder, ``$XDG_CACHE_HOME/rtflow/tools`` (default ``~/.cache/rtflow/tools``).

Each tool keeps its own variable naming one binary or folder (``RTFLOW_ARGO_LINT``, ...), which
wins over all of these. :func:`provision_advice` says how to fill the folder with a command that
exists: the provisioning script, run in the checkout found (2 or 3), named by its path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_VAR = "RTFLOW_TOOLS"
# sdk/verify/tools_home.py -> the folder holding sdk/: a checkout in an editable install.
_PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def is_checkout(folder: Path) -> bool:
    """``folder`` is an rtflow source checkout: it has the provisioning scripts and the SDK."""
    return (folder / "tools" / "provision.sh").is_file() and (folder / "sdk" / "verify").is_dir()


def _checkout_of_cwd() -> Path | None:
    try:
        here = Path.cwd().resolve()
    except OSError:  # the current folder was deleted
        return None
    for folder in (here, *here.parents):
        if is_checkout(folder):
            return folder
    return None


def checkout() -> Path | None:
    """The rtflow checkout whose ``tools/`` scripts can provision: the package's, else the one
    holding the current folder, else None."""
    if is_checkout(_PACKAGE_PARENT):
        return _PACKAGE_PARENT
    return _checkout_of_cwd()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "rtflow" / "tools"


@dataclass(frozen=True)
class ToolsHome:
    """The tools folder and why it is that one (for messages)."""

    path: Path
    source: str  # "$RTFLOW_TOOLS", "the rtflow checkout ...", "the user cache folder"
    checkout: Path | None

    @property
    def bin(self) -> Path:
        return self.path / "bin"

    @property
    def schemas(self) -> Path:
        return self.path / "schemas"


def find() -> ToolsHome:
    """The tools folder, by the order in the module docstring (computed on each call, so a
    changed environment or current folder is seen)."""
    found = checkout()
    if os.environ.get(ENV_VAR):
        return ToolsHome(Path(os.environ[ENV_VAR]), f"${ENV_VAR}", found)
    if found is not None:
        return ToolsHome(found / ".tools", f"the rtflow checkout {found}", found)
    return ToolsHome(cache_dir(), "the user cache folder (no rtflow checkout found)", None)


def provision_advice(script: str, writes: str, needs: str, looks_at: Path | None = None) -> str:
    """How to put ``writes`` (a path under the tools folder, ``bin/argo-lint``) where lint
    looks (``looks_at``, when a variable of its own moved it), naming a command that exists:
    ``script`` (``tools/provision.sh``, which ``needs`` Go, say) run in a checkout."""
    home = find()
    target = looks_at or home.path / writes
    if home.checkout is not None and target == home.checkout / ".tools" / writes:
        return f"run `{script}` in {home.checkout} (needs {needs}; it writes {target})"
    if home.checkout is not None:
        moved = f" (${ENV_VAR} is set)" if looks_at is None and os.environ.get(ENV_VAR) else ""
        return (
            f"run `{script}` in {home.checkout} (needs {needs}; it writes "
            f"{home.checkout / '.tools' / writes}), or put it at {target}{moved}"
        )
    return (
        f"run `{script}` in an rtflow source checkout (needs {needs}) and set {ENV_VAR} to "
        f"its .tools folder, or put it at {target} (lint looks in {home.source})"
    )
