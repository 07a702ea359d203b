"""Stages but no pipeline."""

import rtflow


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def lonely(x: int) -> int:
    return x
