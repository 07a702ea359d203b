"""A pipeline with a memory quantity the API server would reject."""

import rtflow


@rtflow.stage(image="ghcr.io/acme/tools:1.0", memory="512MB")
def embed(text: str) -> list[float]:
    return [float(len(text))]


@rtflow.pipeline(name="embeddings")
def embeddings(text: str) -> None:
    embed(text)
