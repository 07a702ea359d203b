"""Core Kubernetes objects (and any ObjectMeta) against kubernetes-validate's strict schemas,
with one validator per kind, built once.

``kubernetes_validate.validate()`` reads and parses its ``_definitions.json`` (1.2 MB) and
builds a new reference registry on every call; over a folder of a few thousand objects that was
most of lint's time (a 5 MB file took 101 s). Here the same files, the same version choice and
the same validator class give the same verdict, and the parsed schemas and validators are kept
for the life of the process.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from typing import Any

import jsonschema  # type: ignore[import-untyped,unused-ignore]
from referencing import Registry, Resource

from rtflow.verify import KUBERNETES_VERSION


class SchemaNotFound(Exception):
    """kubernetes-validate has no schema for this apiVersion and kind (a custom resource)."""


def _utils() -> Any:
    from kubernetes_validate import utils

    return utils


@functools.cache
def _schema_dir(desired: str) -> tuple[str, str]:
    """(the schema folder, the version it is) for ``desired``, chosen as kubernetes-validate
    chooses: the newest version not newer than ``desired``, strict."""
    utils = _utils()
    wanted = utils.major_minor(desired)
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= wanted][-1]
    return f"v{version}-local-strict", utils.major_minor(version)


@functools.cache
def _definitions(folder: str, desired: str) -> Any:
    return _utils().schema_contents(f"kubernetes-json-schema/{folder}/_definitions.json", desired)


@functools.cache
def _validator(api_version: str, kind: str, desired: str) -> Any:
    utils = _utils()
    folder, _ = _schema_dir(desired)
    # rbac.authorization.k8s.io/v1 -> rbac-v1, as kubernetes-validate names its files.
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    try:
        schema = utils.schema_contents(
            f"kubernetes-json-schema/{folder}/{kind.lower()}-{group_version}.json", desired
        )
    except FileNotFoundError:
        raise SchemaNotFound(f"no schema for {api_version} {kind}") from None
    registry: Registry[Any] = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(_definitions(folder, desired)) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def first_error(
    document: Mapping[str, Any], version: str = KUBERNETES_VERSION
) -> jsonschema.ValidationError | None:
    """The error ``kubernetes_validate.validate(document, version, strict=True)`` raises (the
    first one found), or None when the object is valid.

    Raises :class:`SchemaNotFound` for a kind it has no schema of.
    """
    validator = _validator(
        str(document.get("apiVersion", "")), str(document.get("kind", "")), version
    )
    return next(iter(validator.iter_errors(dict(document))), None)
