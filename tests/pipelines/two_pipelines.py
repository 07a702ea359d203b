"""Two pipelines in one file: compile must emit both. Each names its namespace, as a pipeline
that a cluster receives should (without one, its RBAC lands in whatever namespace applies it,
``default`` for Argo CD: the scanners' CKV_K8S_21)."""

import rtflow


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def fetch(url: str) -> str:
    return url


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def count_words(text: str) -> int:
    return len(text.split())


@rtflow.pipeline(name="ingest", namespace="ml")
def ingest(url: str) -> None:
    count_words(fetch(url))


@rtflow.pipeline(name="nightly-report", namespace="reports", deadline="2h")
def nightly_report(url: str = "https://example.com/report") -> None:
    fetch(url)
