"""Text tensors (Triton ``TYPE_STRING``, KServe ``BYTES``) on the gRPC paths.

Triton's BYTES elements are byte strings; rtflow carries them as ``str`` (UTF-8 text), the way
the KServe v2 JSON body and answer already do, so a stage reads an output of the http step, the
gRPC client stage and the stream plane alike. Two things tritonclient does not do for us:

* it sends any element of an object array as ``str(element).encode()``, so ``[5]`` fed to a text
  tensor would silently become ``"5"``: :func:`text_problem` refuses what is not ``str``/``bytes``
  before the request is built;
* it answers BYTES outputs as ``bytes``, which no JSON parameter can carry:
  :func:`decoded` turns them into ``str``.

No numpy import here: the arrays come from the callers, which have it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BYTES", "TextDecodeError", "decoded", "text_problem"]

BYTES = "BYTES"
"""The KServe v2 datatype of Triton's ``TYPE_STRING``."""


class TextDecodeError(ValueError):
    """A BYTES output holds bytes that are not UTF-8 text."""


def text_problem(array: Any) -> str | None:
    """Why an (object) array is not a text tensor: the first element that is not ``str`` or
    ``bytes``; None when every element is."""
    for item in array.flat:
        if item.__class__ is not str and not isinstance(item, str | bytes):
            return f"holds {item!r} ({type(item).__name__}), not text (str)"
    return None


def decoded(items: list[Any]) -> list[Any]:
    """The flat elements of a BYTES output as ``str``: UTF-8 decoded, strictly (a model that
    answers binary data in a text tensor is refused rather than mangled)."""
    out: list[Any] = []
    for index, item in enumerate(items):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TextDecodeError(
                    f"element {index} is not UTF-8 text ({exc.reason} at byte {exc.start})"
                ) from None
        out.append(item)
    return out
