"""Environment(require_digests=True) holds rtflow's own images to it too (issue #13): rtflow
publishes no image, so it carries no digest for its built-in ones; each can be built from
rtflow.stages.dockerfiles, and the error says to build, push and pin it."""

from __future__ import annotations

import pytest

import rtflow
from rtflow.errors import DefinitionError

IMAGE = "ghcr.io/acme/tools:1.0"


def test_every_builtin_image_has_a_recipe_and_require_digests_names_the_fix() -> None:
    """rtflow publishes no image, so it carries no digest for its own: each built-in stage's
    image can be built from rtflow.stages.dockerfiles, and require_digests says to pin it."""
    import importlib
    import pkgutil

    import rtflow.stages.builtin as builtin
    from rtflow.stages.dockerfiles import render_base_dockerfile

    names = set()
    for module in pkgutil.iter_modules(builtin.__path__):
        loaded = importlib.import_module(f"rtflow.stages.builtin.{module.name}")
        for value in vars(loaded).values():
            image = getattr(getattr(value, "options", None), "image", None)
            if isinstance(image, str) and image.startswith(builtin.DEFAULT_REGISTRY):
                names.add(image.rsplit("/", 1)[1].split(":")[0])
    assert {"kafka-publish", "http-callback", "triton-client"} <= names
    for name in names:
        assert "ENTRYPOINT" in render_base_dockerfile(builtin=name)

    from rtflow.stages.builtin.kafka_publish import kafka_publish

    @rtflow.pipeline(
        name="pinned",
        namespace="pinned",
        environments=[
            rtflow.Environment(
                "prod", require_digests=True, images={"ghcr.io/acme/tools": "sha256:" + "a" * 64}
            )
        ],
    )
    def pinned(n: int) -> None:
        kafka_publish(topic="t", payload={"n": 1}).after(
            rtflow.container("c", image=IMAGE, args=["{n}"], inputs={"n": int})(n=n)
        )

    with pytest.raises(DefinitionError) as caught:
        pinned.build()
    message = str(caught.value)
    assert "\n" not in message
    assert "environments['prod'].require_digests" in message
    assert (
        "rtflow publishes no digest for its built-in image(s) ghcr.io/rtflow/kafka-publish"
        in message
    )
    assert "images={'ghcr.io/rtflow/kafka-publish': '<registry>/kafka-publish@sha256:" in message
