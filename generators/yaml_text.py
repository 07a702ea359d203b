"""Deterministic YAML for Kubernetes objects.

Same objects in, same bytes out: keys keep a conventional order (apiVersion, kind, metadata,
spec, then name first inside list items) and otherwise the order the models define, strings
are never folded, and the C emitter is used when PyYAML has it.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

_Base: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_Base):  # type: ignore[valid-type,misc]
    """Our own dumper: other libraries (hera) register global representers on SafeDumper."""


_Dumper.add_representer(str, yaml.representer.SafeRepresenter.represent_str)

# A string is written plain only when every reader takes it back as that string. PyYAML quotes
# what *its* YAML 1.1 resolver would read as another type, but Go's YAML 1.1 readers (yaml.v2,
# which kubectl, Argo and Argo CD use) also read y/Y/n/N as booleans, and YAML 1.2 readers read
# 1e3, 0o17 and .5 as numbers: a stage named ``y`` or a parameter value ``1e3`` written plain
# broke `argo lint`. These resolvers only make the dumper quote such strings.
_Dumper.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:y|Y|n|N)$"), list("yYnN"))
_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?0o[0-7]+|[-+]?0x[0-9a-fA-F]+)$"), list("-+0")
)
_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)
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
