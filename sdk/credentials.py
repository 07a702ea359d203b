"""What counts as a credential given inline: one definition for the compiler and for lint.

A credential belongs in a Kubernetes Secret, mounted as a file or referenced from the
environment; written into a pipeline it ends up in Git, in the WorkflowTemplate and in every
pod's spec. Three shapes are recognised:

* an environment variable whose *name* says it holds one (``DB_PASSWORD``, ``API_KEY``) and
  whose value is given literally;
* a URL with a password in it (``postgres://admin:hunter2@db/x``), in any value;
* a command-line flag whose name says it takes one (``--password hunter2``,
  ``--api-key=...``), followed by a literal.

A value that only refers to something else is not a credential: an Argo parameter
(``{{inputs.parameters.x}}``), an environment reference (``$(DB_PASSWORD)``, ``${TOKEN}``), or a
path (a Secret mounted as a file: ``/var/run/secrets/...``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

CREDENTIAL_NAME = re.compile(
    r"PASSW(OR)?D|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL|ACCESS_?KEY|AUTH", re.IGNORECASE
)
"""A name (an environment variable's, a flag's) that says its value is a credential."""

_FLAG_NAME = re.compile(
    r"passw(or)?d|secret|token|api[-_]?key|private[-_]?key|access[-_]?key|credential",
    re.IGNORECASE,
)
# A flag that says *where* the credential is, or what kind it is, takes no credential itself.
_FLAG_NOT_A_VALUE = re.compile(r"[-_.](file|path|dir|env|name|mode|type|ref|id|url)$", re.I)
_URL_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/:@]+:(?P<password>[^\s/@]+)@")
_REFERENCE = re.compile(r"^(\{\{.*\}\}|\$\(.*\)|\$\{.*\}|\$[A-Za-z_][A-Za-z0-9_]*)$")
_FLAG = re.compile(r"^--?(?P<name>[A-Za-z][-A-Za-z0-9_.]*)(=(?P<value>.*))?$")


def inside(value: str, mounts: Sequence[str]) -> bool:
    """``value`` is a path under one of a container's volume mounts (no ``..`` tricks)."""
    if not value.startswith("/") or "/../" in f"{value}/":
        return False
    return any(m and (value == m or value.startswith(m.rstrip("/") + "/")) for m in mounts)


def is_reference(value: str, mounts: Sequence[str] | None = None) -> bool:
    """A value that names where the credential is (a parameter, a variable, a file): any
    path, or with ``mounts`` (what lint sees of a container) a path under one of them."""
    if _REFERENCE.match(value):
        return True
    return inside(value, mounts) if mounts is not None else value.startswith("/")


def url_password(value: str) -> str | None:
    """Why ``value`` holds a password in a URL, or None."""
    match = _URL_PASSWORD.search(value)
    if match is None or is_reference(match["password"]):
        return None
    return "a URL with a password in it"


def env_credential(name: str, value: str, mounts: Sequence[str] | None = None) -> str | None:
    """Why an environment variable given literally is a credential, or None."""
    if value and CREDENTIAL_NAME.search(name) and not is_reference(value, mounts):
        return f"{name} looks like a credential"
    reason = url_password(value)
    return f"{name} holds {reason}" if reason else None


def argument_credentials(args: Sequence[str]) -> list[str]:
    """Why some of a command line's arguments are credentials given literally (empty: none)."""
    found: list[str] = []
    for index, arg in enumerate(args):
        reason = url_password(arg)
        if reason:
            found.append(f"argument {index} holds {reason}")
            continue
        match = _FLAG.match(arg)
        if match is None or not _FLAG_NAME.search(match["name"]):
            continue
        if _FLAG_NOT_A_VALUE.search(match["name"]):
            continue
        value = match["value"]
        if value is None and index + 1 < len(args) and not args[index + 1].startswith("-"):
            value = args[index + 1]
        if value and not is_reference(value):
            found.append(f"flag {arg.split('=', 1)[0]} is given a credential")
    return found
