"""The IR of an approval (``rtflow.approval``): an Argo ``suspend`` whose ``decision`` the
approver supplies; with a ``timeout``, Argo's ``suspend.duration``, after which the decision
is ``on_timeout`` (see :class:`rtflow.ir.Approval`)."""

from __future__ import annotations

from rtflow import ir
from rtflow.errors import DefinitionError
from rtflow.names import check_dns1123_label
from rtflow.param_types import ParamType
from rtflow.quantity import check_seconds
from rtflow.recording import ApprovalDef
from rtflow.stage_ir import RESERVED_TEMPLATE_NAMES

__all__ = ["approval_ir"]


def approval_ir(definition: ApprovalDef) -> ir.Stage:
    name = check_dns1123_label(definition.name, field="name", what="approval name")
    if name in RESERVED_TEMPLATE_NAMES:
        raise DefinitionError(
            f"{name!r} is reserved for the pipeline's own templates",
            fix=f"name the approval e.g. {name + '-approval'!r}",
            stage=name,
            field="name",
        )
    choices = definition.choices
    if len(choices) < 2 or len(set(choices)) != len(choices) or not all(choices):
        raise DefinitionError(
            f"choices {list(choices)!r} must be at least two distinct, non-empty strings",
            fix="use e.g. choices=('approve', 'reject'); the first one approves",
            stage=name,
            field="choices",
        )
    if any("'" in c for c in choices):
        raise DefinitionError(
            "a choice contains a single quote, which Argo expressions cannot hold",
            fix="use plain words",
            stage=name,
            field="choices",
        )
    if definition.default not in choices:
        raise DefinitionError(
            f"default {definition.default!r} is not one of {list(choices)!r}",
            fix="use one of the choices",
            stage=name,
            field="default",
        )
    timeout = None
    if definition.timeout is not None:
        try:
            timeout = check_seconds(definition.timeout, field="timeout")
        except DefinitionError as error:
            raise error.located(stage=name) from None
    if definition.on_timeout is not None and definition.on_timeout not in choices:
        raise DefinitionError(
            f"on_timeout {definition.on_timeout!r} is not one of {list(choices)!r}",
            fix="use one of the choices",
            stage=name,
            field="on_timeout",
        )
    if definition.on_timeout is not None and timeout is None:
        raise DefinitionError(
            "on_timeout is given but the approval has no timeout",
            fix="give timeout='30m' (or seconds) too, or drop on_timeout",
            stage=name,
            field="on_timeout",
        )
    return ir.Stage(
        name=name,
        kind="approval",
        outputs=(ir.Output("decision", ParamType("str"), ""),),
        description=definition.description,
        approval=ir.Approval(
            choices=tuple(choices),
            default=definition.default,
            approve=definition.approve,
            timeout_seconds=timeout,
            on_timeout=definition.on_timeout,
        ),
    )
