"""Inference calls' values: a scalar fed to a one-element tensor, and one output picked from
an answer (``scored.output("risk")``), each typed from the model declaration.

Kept apart from :mod:`rtflow.ir_builder` (which calls these) because they read the model: its
tensors' dims and data types decide what an argument may be and what a pick's type is.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from rtflow import ir, stage_ir
from rtflow.errors import DefinitionError
from rtflow.literals import Resolved, json_constant, scalar_type
from rtflow.param_types import list_of

if TYPE_CHECKING:
    from rtflow.gpu.models import TritonModel

__all__ = ["picked_output", "served_model", "tensor_elements", "tensor_value"]


def served_model(server: object, name: str) -> TritonModel:
    """The declaration of model ``name`` among the server's models (checked when its stage
    was built, so it is there)."""
    from rtflow.gpu.models import TritonModel

    found = next(m for m in getattr(server, "models", ()) if m.name == name)
    assert isinstance(found, TritonModel)
    return found


def tensor_value(
    resolved: Resolved, raw: object, param: ir.Param, elements: int | None, shape: str
) -> Resolved:
    """A scalar fed to a tensor input that holds one element, as the one-item list the tensor's
    flat data is (``{"text": message}`` is ``{"text": [message]}``); any other value as it is.

    ``elements`` is the tensor's element count with its batch of one (None when a dimension is
    variable), ``shape`` its shape as the error message shows it.
    """
    item = param.type.item
    scalar = resolved.type if resolved.type is not None else scalar_type(raw)
    if item is None or scalar is None or scalar.kind in ("list", "dict"):
        return resolved
    if not item.accepts(scalar):
        return resolved  # the usual type error names both types
    if elements != 1:
        many = f"{elements} elements" if elements is not None else "a variable number of elements"
        raise DefinitionError(
            f"tensor input {param.name!r} holds {many} (shape {shape}) but is fed one {scalar}",
            fix=f"pass a {param.type} of its flat data, e.g. {{{param.name!r}: [a, b, ...]}}, "
            "or declare the tensor with dims (1,)",
            field=param.name,
        )
    if resolved.type is None:
        return json_constant([raw], param.name)
    value = resolved.value
    if scalar.kind == "str":
        assert isinstance(value, ir.PipelineInput | ir.TaskOutput | ir.WorkflowField)
        value = ir.JsonString(value)
    return Resolved(ir.JsonList((value,)), list_of(scalar), resolved.producers)


def tensor_elements(
    model: TritonModel, shapes: Mapping[str, object]
) -> dict[str, tuple[int | None, str]]:
    """Each input tensor's element count with a batch of one (None when a dimension is
    variable) and its shape as text, for :func:`tensor_value`. ``shapes`` are the shapes
    given to ``rtflow.infer``, which win over the declaration."""
    counts: dict[str, tuple[int | None, str]] = {}
    for tensor in model.inputs:
        given = shapes.get(tensor.name)
        if isinstance(given, list | tuple) and all(isinstance(d, int) for d in given):
            dims = [int(d) for d in given]
        else:
            dims = [1, *tensor.dims] if model.batched else list(tensor.dims)
        elements = None if -1 in dims else math.prod(dims)
        counts[tensor.name] = (
            elements,
            "[" + ", ".join("n" if d == -1 else str(d) for d in dims) + "]",
        )
    return counts


def picked_output(model: TritonModel, answer: Resolved, tensor: str, field: str) -> Resolved:
    """``scored.output(tensor)``: the flat data of one output of ``answer`` (the inference
    step's output), typed by the tensor's data type; the model must declare it."""
    declared = {t.name: t for t in model.outputs}
    if tensor not in declared:
        raise DefinitionError(
            f"model {model.name!r} has no output {tensor!r}",
            fix=f"pick one of its outputs: {', '.join(declared)}",
            field=field,
        )
    assert isinstance(answer.value, ir.TaskOutput)
    return Resolved(
        ir.TensorData(answer.value, tensor),
        stage_ir.tensor_param(declared[tensor]).type,
        answer.producers,
    )
