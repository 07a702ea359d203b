"""Rules of a pipeline's graph that need no builder state: how `when` parts combine, whether
a comparison is quoted (and whether Argo's expressions can hold it at all), and that the DAG
has no cycle. Split from :mod:`rtflow.ir_builder` to keep that module readable; every error
names the field and the fix, the builder adds the pipeline and the stage."""

from __future__ import annotations

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.param_types import ParamType
from rtflow.recording import Ref

__all__ = ["check_acyclic", "comparison_quoted", "flatten"]

_ORDERING_OPS = frozenset({">", ">=", "<", "<="})


def flatten(
    parts: list[ir.Condition], kind: type[ir.AllOf] | type[ir.AnyOf]
) -> tuple[ir.Condition, ...]:
    """(a & b) & c is a & b & c: one level of parentheses in the Argo expression, not two."""
    flat: list[ir.Condition] = []
    for part in parts:
        flat.extend(part.parts if isinstance(part, kind) else (part,))
    return tuple(flat)


def comparison_quoted(
    op: str, left: ParamType | None, right: ParamType | None, raw_right: object
) -> bool:
    kinds = {t.kind for t in (left, right) if t is not None}
    if right is None and not isinstance(raw_right, Ref):
        raise DefinitionError(
            f"cannot compare with {raw_right!r}",
            fix="compare with a str, int, float or bool",
            field="when",
        )
    if kinds & {"dict", "list"}:
        raise DefinitionError(
            "dicts and lists cannot be compared in `when`",
            fix="return the deciding value as its own str, number or bool output",
            field="when",
        )
    numeric = kinds <= {"int", "float"}
    if op in _ORDERING_OPS and not numeric:
        raise DefinitionError(
            f"`{op}` needs numbers, got {' and '.join(sorted(kinds))}",
            fix="order only int or float values; use == or != for strings and bools",
            field="when",
        )
    if len(kinds) > 1 and not numeric:
        raise DefinitionError(
            f"cannot compare {' with '.join(sorted(kinds))}",
            fix="compare values of the same type",
            field="when",
        )
    if isinstance(raw_right, str) and "'" in raw_right:
        raise DefinitionError(
            f"the string {raw_right!r} contains a single quote, which Argo expressions cannot hold",
            fix="compare with a value without quotes",
            field="when",
        )
    return kinds == {"str"}


def check_acyclic(tasks: list[ir.Task]) -> None:
    """Kahn's algorithm; a cycle can only come from after(), and names every task in it."""
    indegree = {t.name: len(t.depends) for t in tasks}
    children: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for d in t.depends:
            children[d].append(t.name)
    ready = [n for n, d in indegree.items() if d == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for child in children[node]:
            indegree[child] -= 1
            if indegree[child] == 0:
                ready.append(child)
    if seen != len(tasks):
        cycle = sorted(n for n, d in indegree.items() if d > 0)
        raise DefinitionError(
            f"the stages {', '.join(cycle)} depend on each other in a cycle",
            fix="remove one of the after() links so the graph has no loop",
            stage=cycle[0],
            field="after",
        )
