"""A stage and inputs named as YAML 1.1 booleans (y, n, on) with such defaults (no, off):
the real `argo lint` could not parse rtflow's output for it (issue #12)."""

import rtflow


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def y(n: str, on: str) -> str:
    return n + on


@rtflow.pipeline(name="yes-no", namespace="yes-no")
def yes_no(n: str = "no", on: str = "off") -> None:
    y(n, on)
