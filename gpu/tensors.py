"""A Triton model's input and output tensors: names, data types and shapes.

A tensor is its own concept because more than the model declaration reads it: KServe v2
request bodies (:mod:`rtflow.gpu.kserve`) and the gRPC client (:mod:`rtflow.gpu.client`) encode
by its data type and dims. Data types are Triton's ``TYPE_*`` names (``model_config.proto``);
:func:`data_type` also takes the usual aliases (``FP32``, ``float32``). ``dims`` never include
the batch dimension.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal, cast, get_args

from rtflow.errors import DefinitionError
from rtflow.gpu.model_checks import _problem

__all__ = ["DATA_TYPES", "DataType", "Tensor", "data_type"]

DataType = Literal[
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
]
DATA_TYPES: Final[tuple[str, ...]] = get_args(DataType)
_DTYPE_ALIASES: Final[dict[str, str]] = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "half": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "double": "TYPE_FP64",
    "bytes": "TYPE_STRING",
    "string": "TYPE_STRING",
    "str": "TYPE_STRING",
    "bfloat16": "TYPE_BF16",
}

MAX_DIM: Final = (1 << 31) - 1

_TENSOR_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/\-]*$")


@dataclass(frozen=True)
class Tensor:
    """An input or output tensor. ``dims`` exclude the batch dimension; ``-1`` is variable."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False
    """A request may leave it out (model_config.proto ``optional``)."""
    reshape: tuple[int, ...] | None = None
    """The shape the model sees (``reshape: { shape: [...] }``; ``()`` for a scalar)."""
    ragged: bool = False
    """``allow_ragged_batch``: batched requests may differ in this dimension."""


def data_type(text: object, *, field: str = "data_type", model: str = "?") -> DataType:
    """Triton's ``TYPE_*`` name for ``TYPE_FP32``, ``FP32``, ``fp32`` or ``float32``."""
    if isinstance(text, str):
        upper = text.strip().upper()
        candidate = upper if upper.startswith("TYPE_") else f"TYPE_{upper}"
        if candidate == "TYPE_BYTES":
            candidate = "TYPE_STRING"
        if candidate in DATA_TYPES:
            return cast(DataType, candidate)
        alias = _DTYPE_ALIASES.get(text.strip().lower())
        if alias is not None:
            return cast(DataType, alias)
    raise DefinitionError(
        _problem(model, f"data type {text!r} is not a Triton data type"),
        fix=f"use one of {', '.join(DATA_TYPES)}",
        field=field,
    )


def _tensor(spec: object, *, model: str, field: str) -> Tensor:
    name: object
    dtype: object
    dims: object
    if isinstance(spec, Tensor):
        name, dtype, dims = spec.name, spec.data_type, spec.dims
    elif isinstance(spec, Mapping):
        name, dtype, dims = spec.get("name"), spec.get("data_type"), spec.get("dims")
    elif isinstance(spec, (tuple, list)) and len(spec) == 3:
        name, dtype, dims = spec
    else:
        raise DefinitionError(
            _problem(model, f"tensor {spec!r} is not (name, data_type, dims)"),
            fix="declare it as Tensor('features', 'TYPE_FP32', (5,)) or ('features', 'FP32', [5])",
            field=field,
        )
    if not isinstance(name, str) or not _TENSOR_NAME.match(name):
        raise DefinitionError(
            _problem(model, f"tensor name {name!r} is not valid"),
            fix="use letters, digits, '_', '.', ':', '/' or '-', starting with a letter or '_'",
            field=field,
        )
    field = f"{field.rsplit('[', 1)[0]}[{name}]"
    checked = data_type(dtype, field=f"{field}.data_type", model=model)
    if isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence) or not dims:
        raise DefinitionError(
            _problem(model, f"tensor {name!r} dims {dims!r} is not a non-empty list"),
            fix="give the shape without the batch dimension, e.g. [5] or [-1, 128]",
            field=f"{field}.dims",
        )
    for dim in dims:
        if (
            isinstance(dim, bool)
            or not isinstance(dim, int)
            or not (dim == -1 or 1 <= dim <= MAX_DIM)
        ):
            raise DefinitionError(
                _problem(model, f"tensor {name!r} dims {list(dims)!r}: {dim!r} is out of range"),
                fix="use positive sizes, or -1 for a variable-size dimension",
                field=f"{field}.dims",
            )
    made = Tensor(name=name, data_type=checked, dims=tuple(dims))
    if isinstance(spec, Tensor):  # keep optional / reshape / ragged
        made = replace(spec, name=name, data_type=checked, dims=tuple(dims))
    return made


def _tensors(specs: object, *, model: str, field: str) -> tuple[Tensor, ...]:
    if isinstance(specs, (str, bytes, Mapping)) or not isinstance(specs, Sequence) or not specs:
        raise DefinitionError(
            _problem(model, f"{field} must be a non-empty list of tensors"),
            fix=f"declare {field}=[Tensor('name', 'TYPE_FP32', (5,))]",
            field=field,
        )
    tensors = tuple(_tensor(s, model=model, field=f"{field}[{i}]") for i, s in enumerate(specs))
    seen: set[str] = set()
    for tensor in tensors:
        if tensor.name in seen:
            raise DefinitionError(
                _problem(model, f"two {field} are named {tensor.name!r}"),
                fix="give every tensor its own name",
                field=f"{field}[{tensor.name}]",
            )
        seen.add(tensor.name)
    return tensors
