"""A trigger's ``filter=`` as Argo Events filters: data filters when it is a conjunction of
comparisons (each one ``dataFilter``, ANDed), else one ``exprs`` filter, each comparison
checked against the payload's known field types when built.

Split from :mod:`rtflow.trigger_ir`, which builds the rest of a trigger and calls
:func:`compile_filter`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import cast

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.param_types import ParamType
from rtflow.triggers import FilterAll, FilterAny, FilterCompare, FilterExpr, FilterNot

__all__ = ["compile_filter"]

_REGEX_SPECIAL = set("\\.+*?()|[]{}^$")
_FILTER_OPS = {"==": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<="}


def compile_filter(
    expr: FilterExpr | None, *, field: str, path_type: Callable[[str], ParamType | None]
) -> tuple[tuple[ir.DataFilter, ...], tuple[ir.ExprFilter, ...]]:
    """``expr`` as (data filters, expression filters); errors name ``field``; ``path_type``
    gives a payload path's declared type, if known, to check what it is compared with."""
    return _Filters(field, path_type).compile(expr)


class _Filters:
    def __init__(self, field: str, path_type: Callable[[str], ParamType | None]) -> None:
        self.field = field
        self.path_type = path_type

    def compile(
        self, expr: FilterExpr | None
    ) -> tuple[tuple[ir.DataFilter, ...], tuple[ir.ExprFilter, ...]]:
        if expr is None:
            return (), ()
        parts = _conjuncts(expr)
        if all(isinstance(p, FilterCompare) for p in parts):
            return tuple(self._data_filter(cast(FilterCompare, p)) for p in parts), ()
        fields: dict[str, str] = {}
        text = self._expr(expr, fields)
        ordered = tuple(sorted(fields.items(), key=lambda item: item[1]))
        return (), (ir.ExprFilter(text, ordered),)

    def _checked_filter_type(
        self, compare: FilterCompare
    ) -> tuple[ir.DataFilterType, list[object]]:
        values = list(compare.value) if compare.op == "in" else [compare.value]  # type: ignore[call-overload]
        if not values:
            raise DefinitionError(
                "isin() needs at least one value",
                fix="pass the accepted values",
                field=self.field,
            )
        kinds = {_filter_type(v) for v in values}
        if None in kinds or len(kinds) != 1:
            raise DefinitionError(
                f"filter values {values!r} must all be str, all numbers, or all bool",
                fix="compare a field with values of one type",
                field=self.field,
            )
        kind = cast(ir.DataFilterType, kinds.pop())
        known = self.path_type(compare.path)
        if known is not None:
            fits = {"string": {"str"}, "number": {"int", "float"}, "bool": {"bool"}}[kind]
            if known.kind not in fits:
                raise DefinitionError(
                    f"{compare.path!r} is a {known} but is compared with {values[0]!r}",
                    fix="compare it with a value of its own type",
                    field=self.field,
                )
        if kind != "number" and compare.op not in ("==", "!=", "in"):
            raise DefinitionError(
                f"`{compare.op}` needs numbers, got {values[0]!r}",
                fix="order only numbers; use == or != (or isin) for strings and bools",
                field=self.field,
            )
        return kind, values

    def _data_filter(self, compare: FilterCompare) -> ir.DataFilter:
        kind, values = self._checked_filter_type(compare)
        if kind == "string":
            # Argo Events matches string values as unanchored regular expressions.
            texts = tuple(f"^{_regex_escape(str(v))}$" for v in values)
        elif kind == "bool":
            texts = tuple("true" if v else "false" for v in values)
        else:
            texts = tuple(json.dumps(v) for v in values)
        comparator = "=" if compare.op == "in" else _FILTER_OPS[compare.op]
        return ir.DataFilter(compare.path, kind, comparator, texts)

    def _expr(self, expr: FilterExpr, fields: dict[str, str]) -> str:
        if isinstance(expr, FilterAll):
            return " && ".join(f"({self._expr(p, fields)})" for p in expr.parts)
        if isinstance(expr, FilterAny):
            return " || ".join(f"({self._expr(p, fields)})" for p in expr.parts)
        if isinstance(expr, FilterNot):
            return f"!({self._expr(expr.part, fields)})"
        assert isinstance(expr, FilterCompare)
        _, values = self._checked_filter_type(expr)
        name = fields.setdefault(expr.path, f"f{len(fields)}")
        literals = [json.dumps(v) for v in values]
        if expr.op == "in":
            return " || ".join(f"{name} == {lit}" for lit in literals)
        return f"{name} {expr.op} {literals[0]}"


def _conjuncts(expr: FilterExpr) -> list[FilterExpr]:
    """a & b & c as [a, b, c]: each may become one data filter under dataLogicalOperator and."""
    if isinstance(expr, FilterAll):
        return [c for part in expr.parts for c in _conjuncts(part)]
    return [expr]


def _filter_type(value: object) -> str | None:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _regex_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in _REGEX_SPECIAL else c for c in text)
