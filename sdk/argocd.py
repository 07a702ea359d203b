"""``rtflow.ArgoCD``: where Argo CD finds a compiled pipeline's folder in Git.

A plain value on the pipeline; ``build_argocd`` checks it once in the IR builder and
``resolve_argocd`` merges ``rtflow compile``'s ``--repo-url/--revision/--path-prefix`` into it,
so the command line and the definition are checked by the same rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label

__all__ = ["ArgoCD", "build_argocd", "resolve_argocd"]

_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")


@dataclass(frozen=True, kw_only=True)
class ArgoCD:
    """Where Argo CD finds the compiled folder: ``repo_url`` at ``revision``, under
    ``path_prefix`` (the folder ``rtflow compile -o`` wrote, relative to the repository root).
    ``rtflow compile --repo-url/--revision/--path-prefix`` override these."""

    repo_url: str | None = None
    revision: str = "HEAD"
    path_prefix: str | None = None
    project: str = "default"
    namespace: str = "argocd"
    destination_server: str = "https://kubernetes.default.svc"


def build_argocd(value: object) -> ir.ArgoCD:
    if value is None:
        return ir.ArgoCD()
    if not isinstance(value, ArgoCD):
        raise DefinitionError(
            f"argocd is a {type(value).__name__}, not rtflow.ArgoCD",
            fix="pass argocd=rtflow.ArgoCD(repo_url='https://github.com/acme/deploy.git')",
            field="argocd",
        )
    return resolve_argocd(
        ir.ArgoCD(
            repo_url=value.repo_url,
            revision=value.revision,
            path_prefix=value.path_prefix,
            project=value.project,
            namespace=value.namespace,
            destination_server=value.destination_server,
        )
    )


def resolve_argocd(
    argocd: ir.ArgoCD,
    *,
    repo_url: str | None = None,
    revision: str | None = None,
    path_prefix: str | None = None,
) -> ir.ArgoCD:
    """``argocd`` with the command line's values (when given) taking precedence, checked."""
    result = ir.ArgoCD(
        repo_url=repo_url if repo_url is not None else argocd.repo_url,
        revision=revision if revision is not None else argocd.revision,
        path_prefix=path_prefix if path_prefix is not None else argocd.path_prefix,
        project=argocd.project,
        namespace=argocd.namespace,
        destination_server=argocd.destination_server,
    )
    url = result.repo_url
    if url is not None and not (
        isinstance(url, str) and re.match(r"^(https://|http://|ssh://|git@)[^\s]+$", url)
    ):
        raise DefinitionError(
            f"repo_url {url!r} is not a Git URL",
            fix="use https://github.com/acme/deploy.git or git@github.com:acme/deploy.git",
            field="argocd.repo_url",
        )
    if not isinstance(result.revision, str) or not _REVISION.match(result.revision):
        raise DefinitionError(
            f"revision {result.revision!r} is not a branch, tag or commit",
            fix="use e.g. 'HEAD', 'main' or 'v1.2.0'",
            field="argocd.revision",
        )
    prefix = result.path_prefix
    if prefix is not None:
        clean = prefix.strip("/")
        if not isinstance(prefix, str) or prefix.startswith("/") or ".." in clean.split("/"):
            raise DefinitionError(
                f"path_prefix {prefix!r} is not a path inside the repository",
                fix="give the folder relative to the repository root, e.g. 'manifests'",
                field="argocd.path_prefix",
            )
        result = ir.ArgoCD(**{**result.__dict__, "path_prefix": clean or "."})
    check_dns1123_label(result.project, field="argocd.project", what="Argo CD project")
    check_dns1123_label(result.namespace, field="argocd.namespace", what="namespace")
    return result
