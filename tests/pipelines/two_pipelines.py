"""Two pipelines in one file: compile must emit both."""

import rtflow


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def fetch(url: str) -> str:
    return url


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def count_words(text: str) -> int:
    return len(text.split())


@rtflow.pipeline(name="ingest")
def ingest(url: str) -> None:
    count_words(fetch(url))


@rtflow.pipeline(name="nightly-report", deadline="2h")
def nightly_report(url: str = "https://example.com/report") -> None:
    fetch(url)
