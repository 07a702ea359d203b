"""Images pinned by digest: what ``Environment(require_digests=True)`` demands of every image
an environment runs (stage images, the stream workers', Triton's), rtflow's own included.

rtflow's built-in images (the stages ``kafka-publish``, ``http-callback`` and ``triton-client``,
and the bases ``python-function`` and ``stream-worker`` a user's images build on) are named by
tag, ``ghcr.io/rtflow/<name>:<version>`` (``$RTFLOW_STAGE_REGISTRY`` / ``$RTFLOW_STAGE_TAG``), and
rtflow carries no digest for them, on purpose: rtflow publishes no image (its release builds
none, and nothing in its build can push one), so there is no digest it could vouch for, and a
digest written here without an image behind it would only fail every pull. The images are
defined by :mod:`rtflow.stages.dockerfiles`; a platform team builds them, pushes them to its own
registry and pins what it pushed by the digest that registry reports, in the environment:
``images={"ghcr.io/rtflow/kafka-publish": "registry.example.com/rtflow/kafka-publish@sha256:..."}``.
Under ``require_digests`` a built-in image left by tag is a compile error that says exactly that,
like any other image. When rtflow publishes its images, their digests belong in
:mod:`rtflow.stages.builtin`, beside the tag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rtflow import ir
from rtflow.errors import DefinitionError

BUILTIN_FUNCTIONS = "rtflow.stages.builtin."
"""The module prefix of rtflow's built-in stages, whatever registry their image is taken from."""


def _name(reference: str) -> str:
    name = reference.split("@", 1)[0]
    slash, colon = name.rfind("/"), name.rfind(":")
    return name[:colon] if colon > slash else name


def _pinned(image: str, overrides: dict[str, ir.ImageOverride]) -> bool:
    override = overrides.get(_name(image))
    return override.digest is not None if override else "@sha256:" in image


def check_digests(
    stages: Sequence[ir.Stage],
    other_images: Iterable[str],
    overrides: Sequence[ir.ImageOverride],
    *,
    field: str,
) -> None:
    """Every image pinned by digest (by ``overrides``, an environment's ``images=``, or in the
    reference itself), or one DefinitionError naming them and the fix."""
    by_name = {o.name: o for o in overrides}
    builtin = {
        s.image for s in stages if s.image and (s.function or "").startswith(BUILTIN_FUNCTIONS)
    }
    images = {s.image for s in stages if s.image} | set(other_images)
    loose = sorted(i for i in images if not _pinned(i, by_name))
    if not loose:
        return
    own = [i for i in loose if i in builtin]
    if own:
        name = _name(own[0])
        raise DefinitionError(
            f"{len(loose)} image(s) are not pinned by digest: {', '.join(loose)}; rtflow "
            f"publishes no digest for its built-in image(s) {', '.join(own)}",
            fix="build them (rtflow.stages.dockerfiles), push them to your registry and pin what "
            f"you pushed, e.g. images={{'{name}': '<registry>/{name.rsplit('/', 1)[-1]}"
            "@sha256:<64 hex>'}, or drop require_digests",
            field=field,
        )
    raise DefinitionError(
        f"{len(loose)} image(s) are not pinned by digest: {', '.join(loose)}",
        fix=f"pin each one, e.g. images={{'{_name(loose[0])}': 'sha256:<64 hex>'}}, "
        "or drop require_digests",
        field=field,
    )
