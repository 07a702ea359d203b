"""A stage's environment in the IR: its literal variables and its credentials (``rtflow.Secret``).

A credential is a key of a Kubernetes Secret, never a value. By default it reaches the stage as
a file (``<ENV>_FILE`` holds the path, see :mod:`rtflow.stages.secret_files`); with
``as_env=True`` as the variable ``<ENV>`` itself. A literal variable that looks like a credential
(:mod:`rtflow.credentials`, the rule ``rtflow lint`` applies too) is refused here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rtflow import credentials, ir
from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_subdomain, check_env_name, check_secret_key
from rtflow.options import Secret
from rtflow.stages import contract


def stage_env(env: Mapping[str, str], secrets: Any) -> tuple[ir.EnvVar, ...]:
    """The IR of ``env=`` and ``secrets=``, sorted by name, each name set once."""
    result: dict[str, ir.EnvVar] = {}
    # The variables each entry puts in the container: a credential as a file sets <ENV>_FILE.
    claimed: dict[str, str] = {}

    def claim(variable: str, where: str) -> None:
        if variable in claimed:
            raise DefinitionError(
                f"{variable} is set twice ({claimed[variable]} and {where})",
                fix="set it in one place",
                field=where,
            )
        claimed[variable] = where

    for name, value in env.items():
        check_env_name(name, field=f"env.{name}")
        if not isinstance(value, str):
            raise DefinitionError(
                f"env {name}={value!r} is not a string",
                fix=f"write env={{{name!r}: {str(value)!r}}}",
                field=f"env.{name}",
            )
        reason = credentials.env_credential(name, value)
        if reason:
            raise DefinitionError(
                f"env {reason} and is given inline",
                fix=f"take it from a Secret: secrets=[rtflow.Secret(env={name!r}, "
                "secret='<secret-name>', key='<key>')]",
                field=f"env.{name}",
            )
        claim(name, f"env.{name}")
        result[name] = ir.EnvVar(name=name, value=value)
    for secret in secrets:
        if not isinstance(secret, Secret):
            raise DefinitionError(
                f"secrets must hold rtflow.Secret, got {type(secret).__name__}",
                fix="use rtflow.Secret(env='DB_PASSWORD', secret='db-creds', key='password')",
                field="secrets",
            )
        where = f"secrets.{secret.env}"
        check_env_name(secret.env, field=where)
        check_dns1123_subdomain(secret.secret, field=where, what="secret name")
        check_secret_key(secret.key, field=where)
        if not isinstance(secret.as_env, bool):
            raise DefinitionError(
                f"as_env must be True or False, got {secret.as_env!r}",
                fix="leave it out (a file, the default) or give as_env=True",
                field=where,
            )
        as_file = not secret.as_env
        claim(contract.file_variable(secret.env) if as_file else secret.env, where)
        if secret.env in result:
            raise DefinitionError(
                f"{secret.env} is set twice (env and secrets)",
                fix="set it in one place",
                field=where,
            )
        result[secret.env] = ir.EnvVar(
            name=secret.env, secret=ir.SecretKey(secret.secret, secret.key), file=as_file
        )
    return tuple(result[n] for n in sorted(result))
