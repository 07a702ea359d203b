"""Stage bodies that would fail loudly if compile ever ran them."""

from pathlib import Path

import rtflow

MARKER = Path(__file__).with_suffix(".ran")


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def explode(x: int) -> int:
    MARKER.write_text("a stage body ran at compile time")
    raise RuntimeError("stage bodies must never run at compile time")


@rtflow.stage(image="ghcr.io/acme/tools:1.0")
def also_explode(y: int) -> None:
    MARKER.write_text("a stage body ran at compile time")
    raise RuntimeError("stage bodies must never run at compile time")


@rtflow.pipeline(name="side-effects", namespace="side-effects")
def side_effects(x: int = 1) -> None:
    also_explode(explode(x))
