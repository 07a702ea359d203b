"""Kubernetes names.

Every name that reaches a manifest is checked here, once, when the IR is built: a name that
the API server would reject must never get as far as a cluster. Python identifiers
(``compute_features``) become DNS-1123 labels (``compute-features``) automatically; a name
the user wrote explicitly is checked, and when it is wrong the error offers the nearest valid name.
"""

from __future__ import annotations

import re

from rtflow.errors import DefinitionError

DNS1123_LABEL_MAX = 63
DNS1123_SUBDOMAIN_MAX = 253
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_PARAMETER = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_-]*$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# A Secret's data key: letters, digits, '-', '_', '.'; not '.', '..' or '..x' (Kubernetes
# refuses those, and none could be a file of a mounted volume).
_SECRET_KEY = re.compile(r"^(?!\.\.)(?!\.$)[-._a-zA-Z0-9]{1,253}$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")


def is_dns1123_label(name: str) -> bool:
    return len(name) <= DNS1123_LABEL_MAX and _LABEL.match(name) is not None


def is_dns1123_subdomain(name: str) -> bool:
    return len(name) <= DNS1123_SUBDOMAIN_MAX and _SUBDOMAIN.match(name) is not None


def suggest_dns1123_label(name: str) -> str | None:
    """The nearest valid label: lower case, runs of other characters become one hyphen."""
    lowered = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    fixed = lowered[:DNS1123_LABEL_MAX].rstrip("-")
    return fixed or None


def from_identifier(identifier: str) -> str:
    """A Python identifier as the DNS-1123 label a user would expect: snake_case to kebab-case."""
    return suggest_dns1123_label(identifier) or identifier


def check_dns1123_label(name: str, *, field: str, what: str) -> str:
    if is_dns1123_label(name):
        return name
    suggestion = suggest_dns1123_label(name)
    if len(name) > DNS1123_LABEL_MAX:
        problem = f"{what} {name!r} is {len(name)} characters; Kubernetes allows 63"
    else:
        problem = (
            f"{what} {name!r} is not a DNS-1123 label "
            "(lower-case letters, digits and '-', starting and ending with a letter or digit)"
        )
    fix = f"use {suggestion!r}" if suggestion else "use a name such as 'score-transactions'"
    raise DefinitionError(problem, fix=fix, field=field)


def check_dns1123_subdomain(name: str, *, field: str, what: str) -> str:
    if is_dns1123_subdomain(name):
        return name
    suggestion = suggest_dns1123_label(name)
    raise DefinitionError(
        f"{what} {name!r} is not a DNS-1123 subdomain",
        fix=f"use {suggestion!r}" if suggestion else "use a name such as 'fraud-scorer'",
        field=field,
    )


def check_parameter_name(name: str, *, field: str) -> str:
    if _PARAMETER.match(name):
        return name
    fixed = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-") or "value"
    if not re.match(r"^[A-Za-z_]", fixed):
        fixed = f"p_{fixed}"
    raise DefinitionError(
        f"parameter name {name!r} is not valid for Argo "
        "(letters, digits, '_' and '-', not starting with a digit)",
        fix=f"use {fixed!r}",
        field=field,
    )


def check_env_name(name: str, *, field: str) -> str:
    if _ENV.match(name):
        return name
    fixed = re.sub(r"[^A-Za-z0-9_]+", "_", name).upper().strip("_") or "VALUE"
    raise DefinitionError(
        f"environment variable name {name!r} is not a C identifier",
        fix=f"use {fixed!r}",
        field=field,
    )


def check_secret_key(key: object, *, field: str) -> str:
    if not isinstance(key, str) or not _SECRET_KEY.match(key):
        raise DefinitionError(
            f"secret key {key!r} is not a valid Secret data key",
            fix="use letters, digits, '-', '_' and '.' (not '.' or '..' first)",
            field=field,
        )
    return key


def check_label(key: str, value: str, *, field: str) -> None:
    """A Kubernetes label: qualified-name key (optional DNS prefix), value of at most 63."""
    _check_qualified_key(key, field=field)
    if len(value) > DNS1123_LABEL_MAX or not _LABEL_VALUE.match(value):
        raise DefinitionError(
            f"label value {value!r} for {key!r} is not a valid Kubernetes label value",
            fix="use at most 63 letters, digits, '-', '_' or '.', starting and ending "
            "with a letter or digit (put free text in an annotation)",
            field=field,
        )


def check_annotation_key(key: str, *, field: str) -> None:
    _check_qualified_key(key, field=field)


def _check_qualified_key(key: str, *, field: str) -> None:
    prefix, _, name = key.rpartition("/")
    ok = (not prefix or is_dns1123_subdomain(prefix)) and (
        len(name) <= DNS1123_LABEL_MAX and _QUALIFIED_NAME.match(name) is not None
    )
    if not ok:
        raise DefinitionError(
            f"key {key!r} is not a Kubernetes qualified name",
            fix="use an optional DNS prefix and a name of at most 63 characters, "
            "e.g. 'team.example.com/owner'",
            field=field,
        )
