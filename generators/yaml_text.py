"""Deterministic YAML for Kubernetes objects.

Same objects in, same bytes out: keys keep a conventional order (apiVersion, kind, metadata,
spec, then name first inside list items) and otherwise the order the models define, strings
are never folded, and the C emitter is used when PyYAML has it.
"""

from __future__ import annotations

from typing import Any

import yaml

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    """Our own dumper: other libraries (hera) register global representers on SafeDumper."""


_Dumper.add_representer(str, yaml.representer.SafeRepresenter.represent_str)
_OBJECT_FIRST = ("apiVersion", "kind", "metadata")
_ITEM_FIRST = ("name",)


def ordered(node: Any) -> Any:
    if isinstance(node, dict):
        lead = _OBJECT_FIRST if "apiVersion" in node else _ITEM_FIRST
        first = [k for k in lead if k in node]
        rest = [k for k in node if k not in lead]
        return {k: ordered(node[k]) for k in (*first, *rest)}
    if isinstance(node, list):
        return [ordered(v) for v in node]
    return node


def dump(document: dict[str, Any] | list[Any]) -> str:
    return yaml.dump(
        ordered(document),
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=2**31 - 1,
    )


def dump_all(documents: list[dict[str, Any]]) -> str:
    return "".join(f"---\n{dump(d)}" for d in documents)
