"""Where a Triton model repository lives, and which version folders a model has in it.

:func:`model_repository` parses and checks a location once (``s3://``, ``gs://``, ``pvc://`` or
a local folder), with the Secret that holds its cloud credentials: a reference, never the values.
The serving manifests mount and name it (:mod:`rtflow.gpu.serving`); :mod:`rtflow.gpu.config`
writes a model's version folders (:class:`ModelVersion`) into a local one.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, cast

from rtflow.errors import DefinitionError
from rtflow.gpu.model_checks import _problem, _whole
from rtflow.names import check_dns1123_subdomain, check_env_name

__all__ = ["ModelVersion", "Repository", "model_repository"]

_BUCKET: Final = re.compile(r"^[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]$")
_ENDPOINT: Final = re.compile(r"^[A-Za-z0-9.\-]+:[0-9]{1,5}$")
_PATH_PART: Final = re.compile(r"^[A-Za-z0-9._\-]+$")

RepositoryKind = Literal["s3", "gs", "pvc", "local"]


@dataclass(frozen=True)
class Repository:
    """Where a model repository lives, parsed; build it with :func:`model_repository`.

    * ``s3``: ``location`` is the bucket (``host:port/bucket`` for an S3-compatible endpoint),
      ``path`` the prefix; credentials from ``secret``: Triton's credential file under
      ``secret_keys`` ``{"file": key}`` (the default, mounted), or env name -> key.
    * ``gs``: ``location`` is the bucket; credentials from a service-account key file in
      ``secret`` under ``secret_keys[0][1]``, mounted and named by GOOGLE_APPLICATION_CREDENTIALS.
    * ``pvc``: ``location`` is the claim, ``path`` the folder inside it (mounted read-only).
    * ``local``: a folder on this machine (local runs and tests only).
    """

    uri: str
    kind: RepositoryKind
    location: str
    path: str = ""
    secret: str | None = None
    secret_keys: tuple[tuple[str, str], ...] = ()
    region: str | None = None


# By default an s3 Secret holds Triton's cloud credential file (JSON: {"s3": {"": {"key_id":
# ..., "secret_key": ..., "region": ...}}}), mounted as a file and named by
# TRITON_CLOUD_CREDENTIAL_PATH: credentials stay out of the environment. Environment variables
# (AWS_ACCESS_KEY_ID, ...) remain an explicit choice: secret_keys={"AWS_ACCESS_KEY_ID": ...}.
_S3_DEFAULT_KEYS: Final = (("file", "credentials.json"),)
_GCS_DEFAULT_KEY: Final = "credentials.json"
_REPOSITORY_FIX: Final = (
    "use 's3://bucket/path', 'gs://bucket/path', 'pvc://claim/path' or a local folder"
)


def model_repository(
    uri: str | os.PathLike[str] | Repository,
    *,
    secret: str | None = None,
    secret_keys: Mapping[str, str] | None = None,
    region: str | None = None,
    field: str = "repository",
) -> Repository:
    """Parse and check where a model repository lives.

    Args:
        uri: ``s3://bucket/path``, ``s3://host:port/bucket/path``, ``gs://bucket/path``,
            ``pvc://claim/path`` or a local folder.
        secret: the Secret with the cloud credentials (never the credentials themselves).
        secret_keys: for s3, environment variable -> key in the Secret (default: the keys
            ``{"file": "credentials.json"}``: Triton's cloud credential file, mounted; or
            ``{"AWS_ACCESS_KEY_ID": ..., "AWS_SECRET_ACCESS_KEY": ...}`` for environment
            variables); for gs, ``{"key": "<file>"}``
            (default ``credentials.json``).
        region: for s3, ``AWS_DEFAULT_REGION``.
    """
    if isinstance(uri, Repository):
        return uri
    text = os.fspath(uri)
    if not isinstance(text, str) or not text.strip():
        raise DefinitionError(
            f"model repository {uri!r} is empty", fix=_REPOSITORY_FIX, field=field
        )
    scheme, sep, rest = text.partition("://")
    if not sep:
        if secret is not None or region is not None:
            raise DefinitionError(
                f"model repository {text!r} is a local folder, which takes no secret or region",
                fix="drop secret/region, or use an s3:// or gs:// repository",
                field=field,
            )
        return Repository(uri=text, kind="local", location=text)
    if scheme not in ("s3", "gs", "pvc"):
        raise DefinitionError(
            f"model repository {text!r} has scheme {scheme + '://'!r}, "
            "which rtflow cannot serve from",
            fix=_REPOSITORY_FIX,
            field=field,
        )
    parts = rest.strip("/").split("/") if rest.strip("/") else []
    endpoint = ""
    if scheme == "s3" and parts and _ENDPOINT.match(parts[0]):
        endpoint = parts.pop(0)
    if not parts:
        raise DefinitionError(
            f"model repository {text!r} names no {'claim' if scheme == 'pvc' else 'bucket'}",
            fix=_REPOSITORY_FIX,
            field=field,
        )
    head, path_parts = parts[0], parts[1:]
    if scheme == "pvc":
        check_dns1123_subdomain(head, field=field, what="PersistentVolumeClaim name")
    elif not _BUCKET.match(head) or ".." in head:
        raise DefinitionError(
            f"model repository {text!r}: {head!r} is not a bucket name",
            fix="use 3-63 lower-case letters, digits, '.', '-' or '_'",
            field=field,
        )
    for part in path_parts:
        if not _PATH_PART.match(part) or part in (".", ".."):
            raise DefinitionError(
                f"model repository {text!r}: path segment {part!r} is not allowed",
                fix="use letters, digits, '.', '_' and '-' between slashes, no '..'",
                field=field,
            )
    location = f"{endpoint}/{head}" if endpoint else head
    path = "/".join(path_parts)
    normalized = f"{scheme}://{location}" + (f"/{path}" if path else "")
    keys: tuple[tuple[str, str], ...] = ()
    if scheme == "pvc" and (secret is not None or region is not None):
        raise DefinitionError(
            f"model repository {text!r} is a PVC, which takes no secret or region",
            fix="drop secret/region (the claim is mounted read-only)",
            field=field,
        )
    if scheme == "gs" and region is not None:
        raise DefinitionError(
            f"model repository {text!r}: region applies to s3 only",
            fix="drop region",
            field=field,
        )
    if secret is not None:
        check_dns1123_subdomain(secret, field=f"{field}.secret", what="Secret name")
        if scheme == "s3":
            given = dict(secret_keys) if secret_keys else dict(_S3_DEFAULT_KEYS)
            for env_name, key in given.items():
                if env_name != "file":
                    check_env_name(env_name, field=f"{field}.secret_keys")
                _check_secret_key(key, field=f"{field}.secret_keys")
            keys = tuple(sorted(given.items()))
        else:
            given = dict(secret_keys) if secret_keys else {"key": _GCS_DEFAULT_KEY}
            if set(given) != {"key"}:
                raise DefinitionError(
                    f"model repository {text!r}: a gs:// secret holds one key file",
                    fix="give secret_keys={'key': 'credentials.json'} (the key in the Secret)",
                    field=f"{field}.secret_keys",
                )
            _check_secret_key(given["key"], field=f"{field}.secret_keys")
            keys = (("key", given["key"]),)
    elif secret_keys:
        raise DefinitionError(
            f"model repository {text!r}: secret_keys given without a secret",
            fix="name the Secret with secret='...'",
            field=f"{field}.secret_keys",
        )
    if region is not None and not re.match(r"^[a-z]{2}(-[a-z]+)+-[0-9]+$", region):
        raise DefinitionError(
            f"model repository {text!r}: region {region!r} is not an AWS region",
            fix="use e.g. 'us-east-1' or 'eu-west-3'",
            field=f"{field}.region",
        )
    return Repository(
        uri=normalized,
        kind=cast(RepositoryKind, scheme),
        location=location,
        path=path,
        secret=secret,
        secret_keys=keys,
        region=region,
    )


def _check_secret_key(key: object, *, field: str) -> None:
    if not isinstance(key, str) or not re.match(r"^[-._a-zA-Z0-9]+$", key) or len(key) > 253:
        raise DefinitionError(
            f"Secret key {key!r} is not a valid key",
            fix="use letters, digits, '-', '_' or '.'",
            field=field,
        )


@dataclass(frozen=True)
class ModelVersion:
    """A version folder; ``source`` is a local folder to copy into it (``None``: it is there)."""

    number: int
    source: str | None = None


def _versions(spec: object, *, model: str) -> tuple[ModelVersion, ...]:
    if spec is None:
        return ()
    pairs: list[tuple[object, object]]
    if isinstance(spec, Mapping):
        pairs = list(spec.items())
    elif isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        pairs = [(v, None) for v in spec]
    else:
        raise DefinitionError(
            _problem(model, f"versions {spec!r} is not a list or a dict"),
            fix="give [1, 2] (folders already in the repository) or "
            "{1: 'models/scorer/1'} (local folders to copy)",
            field="versions",
        )
    versions: list[ModelVersion] = []
    for number, source in pairs:
        _whole(
            number,
            model=model,
            field="versions",
            what="version",
            lowest=1,
            highest=(1 << 63) - 1,
            fix="version folders are named by positive whole numbers",
        )
        if source is not None and not isinstance(source, (str, os.PathLike)):
            raise DefinitionError(
                _problem(model, f"version {number} source {source!r} is not a folder path"),
                fix="give the local folder holding that version's files",
                field="versions",
            )
        versions.append(
            ModelVersion(
                number=cast(int, number), source=None if source is None else os.fspath(source)
            )
        )
    numbers = [v.number for v in versions]
    if len(set(numbers)) != len(numbers):
        raise DefinitionError(
            _problem(model, f"version listed twice in {numbers}"),
            fix="list each version once",
            field="versions",
        )
    return tuple(sorted(versions, key=lambda v: v.number))
