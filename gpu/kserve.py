"""The KServe v2 (Open Inference Protocol) request path, as pure functions.

An inference step compiles to an Argo ``http`` template that POSTs a JSON body to
``/v2/models/<name>/infer`` on the Triton Service (``/v2/models/<name>/versions/<stable>/infer``
for a model under canary: :func:`rtflow.gpu.addresses.infer_url`). This module builds that body
from a model's declaration and the input values, checks the values against the declaration
(names, data types, shapes, including the batch dimension when ``max_batch_size > 0``), and
reads the response back into named outputs. Nothing here does I/O, so the compiler, the tests
and the benchmark send the very same bytes.

Body (``application/json``)::

    {"inputs": [{"name": "features", "shape": [1, 5], "datatype": "FP32",
                 "data": [0.1, 0.0, 1.0, 1.0, 0.0]}],
     "outputs": [{"name": "risk"}]}

``data`` is the tensor flattened in row-major order; ``datatype`` is Triton's type without
``TYPE_`` (``TYPE_STRING`` is ``BYTES``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from rtflow.errors import DefinitionError, RtflowError
from rtflow.gpu.models import TritonModel
from rtflow.gpu.tensors import Tensor

__all__ = [
    "KSERVE_DATATYPES",
    "SUCCESS_CONDITION",
    "InferOutput",
    "InferenceError",
    "check_shape",
    "encode_request",
    "flatten",
    "infer_path",
    "infer_request",
    "infer_request_template",
    "parse_infer_response",
]

KSERVE_DATATYPES: Final[dict[str, str]] = {
    "TYPE_BOOL": "BOOL",
    "TYPE_UINT8": "UINT8",
    "TYPE_UINT16": "UINT16",
    "TYPE_UINT32": "UINT32",
    "TYPE_UINT64": "UINT64",
    "TYPE_INT8": "INT8",
    "TYPE_INT16": "INT16",
    "TYPE_INT32": "INT32",
    "TYPE_INT64": "INT64",
    "TYPE_FP16": "FP16",
    "TYPE_FP32": "FP32",
    "TYPE_FP64": "FP64",
    "TYPE_STRING": "BYTES",
    "TYPE_BF16": "BF16",
}
"""Triton config data type -> KServe v2 tensor datatype."""

SUCCESS_CONDITION: Final = "response.statusCode == 200"
"""The Argo ``http`` template's successCondition for an inference step."""

_INT_RANGES: Final[dict[str, tuple[int, int]]] = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
_FLOAT_MAX: Final[dict[str, float]] = {
    "FP16": 65504.0,
    "BF16": 3.3895313892515355e38,
    "FP32": 3.4028234663852886e38,
    "FP64": math.inf,
}
_FP64_MAX: Final = 1.7976931348623157e308


class InferenceError(RtflowError):
    """Triton answered with an error, or with something the model's declaration does not allow."""


def infer_path(model: TritonModel, version: int | None = None) -> str:
    """``/v2/models/<name>[/versions/<v>]/infer``."""
    if version is None:
        return f"/v2/models/{model.name}/infer"
    return f"/v2/models/{model.name}/versions/{version}/infer"


def _error(
    model: TritonModel, text: str, *, fix: str, field: str, stage: str | None
) -> DefinitionError:
    return DefinitionError(f"model {model.name!r}: {text}", fix=fix, field=field, stage=stage)


def _expected(model: TritonModel, tensor: Tensor) -> str:
    dims = ["n" if d == -1 else str(d) for d in tensor.dims]
    if model.batched:
        dims.insert(0, f"batch<={model.max_batch_size}")
    return "[" + ", ".join(dims) + "]"


def _shape_matches(model: TritonModel, dims: tuple[int, ...], shape: tuple[int, ...]) -> bool:
    if model.batched:
        if len(shape) != len(dims) + 1:
            return False
        batch = shape[0]
        if type(batch) is not int or not 1 <= batch <= model.max_batch_size:
            return False
        shape = shape[1:]
    elif len(shape) != len(dims):
        return False
    for want, got in zip(dims, shape, strict=True):
        if type(got) is not int or got < 0 or (want != -1 and want != got):
            return False
    return True


def check_shape(
    model: TritonModel, name: str, shape: Sequence[int], *, stage: str | None = None
) -> tuple[int, ...]:
    """Check a tensor shape against the declared dims (plus the batch dimension if batched)."""
    tensor = _declared_input(model, name, stage=stage)
    shape = tuple(shape)
    if not _shape_matches(model, tensor.dims, shape):
        raise _error(
            model,
            f"input {name!r} has shape {list(shape)}, "
            f"but the model takes {_expected(model, tensor)}",
            fix="send a tensor of the declared dims"
            + (f" with a batch of 1 to {model.max_batch_size} rows first" if model.batched else ""),
            field=f"inputs.{name}",
            stage=stage,
        )
    return shape


def _declared_input(model: TritonModel, name: str, *, stage: str | None) -> Tensor:
    for tensor in model.inputs:
        if tensor.name == name:
            return tensor
    raise _error(
        model,
        f"has no input {name!r}",
        fix=f"use the declared inputs: {', '.join(t.name for t in model.inputs)}",
        field=f"inputs.{name}",
        stage=stage,
    )


_SEQUENCES: Final = (list, tuple)


def flatten(value: object) -> tuple[list[int], list[Any]]:
    """Shape and row-major data of nested lists (or anything with ``tolist()``, e.g. numpy).

    Raises ValueError for ragged nesting or a scalar.
    """
    if not isinstance(value, _SEQUENCES):
        tolist = getattr(value, "tolist", None)
        if callable(tolist):
            value = tolist()
        if not isinstance(value, _SEQUENCES):
            raise ValueError("a tensor must be a list (nested for more dimensions), not a scalar")
    shape = [len(value)]
    level: list[Any] | tuple[Any, ...] = value
    while level and isinstance(level[0], _SEQUENCES):
        size = len(level[0])
        flat: list[Any] = []
        for item in level:
            if not isinstance(item, _SEQUENCES) or len(item) != size:
                raise ValueError("ragged nested lists: every row must have the same length")
            flat.extend(item)
        shape.append(size)
        level = flat
    for item in level:
        if isinstance(item, _SEQUENCES):
            raise ValueError("ragged nested lists: rows nest to different depths")
    return shape, list(level)


def _value_ok(datatype: str, value: object) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype in _INT_RANGES:
        low, high = _INT_RANGES[datatype]
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if datatype in _FLOAT_MAX:
        return (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and abs(value) <= _FLOAT_MAX[datatype]
        )
    return isinstance(value, str)  # BYTES


def _check_values(
    model: TritonModel, name: str, datatype: str, data: list[Any], *, stage: str | None
) -> None:
    limit = _FLOAT_MAX.get(datatype)
    if limit is not None:
        # the common case, kept cheap: plain floats and ints in range (NaN fails both bounds)
        bound = min(limit, _FP64_MAX)
        bad = [v for v in data if type(v) not in (float, int) or not -bound <= v <= bound]
    else:
        bad = data
    for value in bad:
        if not _value_ok(datatype, value):
            kind = {"BOOL": "booleans", "BYTES": "strings"}.get(
                datatype, "whole numbers in range" if datatype in _INT_RANGES else "finite numbers"
            )
            raise _error(
                model,
                f"input {name!r} is {datatype}, but holds {value!r}",
                fix=f"send {kind} for a {datatype} tensor",
                field=f"inputs.{name}",
                stage=stage,
            )


def _check_names(model: TritonModel, given: Collection[str], *, stage: str | None) -> None:
    if len(given) == len(model.inputs) and all(t.name in given for t in model.inputs):
        return
    declared = [t.name for t in model.inputs]
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise _error(
            model,
            f"has no input {unknown[0]!r}",
            fix=f"use the declared inputs: {', '.join(declared)}",
            field=f"inputs.{unknown[0]}",
            stage=stage,
        )
    missing = [name for name in declared if name not in given]
    if missing:
        raise _error(
            model,
            f"input {missing[0]!r} is missing",
            fix=f"give every declared input: {', '.join(declared)}",
            field=f"inputs.{missing[0]}",
            stage=stage,
        )


def _outputs(
    model: TritonModel, outputs: Sequence[str] | None, *, stage: str | None
) -> list[dict[str, str]]:
    if outputs is None:
        return [{"name": t.name} for t in model.outputs]
    declared = [t.name for t in model.outputs]
    chosen = list(outputs)
    for name in chosen:
        if name not in declared:
            raise _error(
                model,
                f"has no output {name!r}",
                fix=f"ask for the declared outputs: {', '.join(declared)}",
                field=f"outputs.{name}",
                stage=stage,
            )
    if len(set(chosen)) != len(chosen) or not chosen:
        raise _error(
            model,
            f"outputs {chosen} must name each output once",
            fix=f"ask for some of {', '.join(declared)}, each once",
            field="outputs",
            stage=stage,
        )
    return [{"name": name} for name in chosen]


def infer_request(
    model: TritonModel,
    inputs: Mapping[str, object],
    *,
    outputs: Sequence[str] | None = None,
    request_id: str | None = None,
    stage: str | None = None,
) -> dict[str, Any]:
    """The KServe v2 JSON body for ``model`` and these input values.

    ``inputs`` maps each declared input to a (nested) list or an array with ``tolist()``; a
    batched model (``max_batch_size > 0``) takes the batch as the first dimension. Inputs appear
    in the model's declared order, so the body does not depend on dict order. ``outputs``
    defaults to every declared output. Any mismatch with the declaration raises a one-line
    :class:`~rtflow.errors.DefinitionError` naming the input (``stage`` locates it in a pipeline).
    """
    _check_names(model, inputs, stage=stage)
    tensors = []
    for tensor in model.inputs:
        value = inputs[tensor.name]
        datatype = KSERVE_DATATYPES[tensor.data_type]
        try:
            shape, data = flatten(value)
        except ValueError as exc:
            raise _error(
                model,
                f"input {tensor.name!r}: {exc}",
                fix=f"send a tensor of shape {_expected(model, tensor)} as nested lists",
                field=f"inputs.{tensor.name}",
                stage=stage,
            ) from None
        check_shape(model, tensor.name, shape, stage=stage)
        _check_values(model, tensor.name, datatype, data, stage=stage)
        tensors.append({"name": tensor.name, "shape": shape, "datatype": datatype, "data": data})
    body: dict[str, Any] = {}
    if request_id is not None:
        body["id"] = request_id
    body["inputs"] = tensors
    body["outputs"] = _outputs(model, outputs, stage=stage)
    return body


def encode_request(body: Mapping[str, Any]) -> bytes:
    """The exact bytes POSTed: compact JSON, no NaN/Infinity (JSON has none)."""
    return json.dumps(body, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def infer_request_template(
    model: TritonModel,
    inputs: Mapping[str, str],
    shapes: Mapping[str, Sequence[int]],
    *,
    outputs: Sequence[str] | None = None,
    stage: str | None = None,
) -> str:
    """The body as text with each input's ``data`` replaced verbatim by an expression.

    For an Argo ``http`` template whose body is filled at run time: ``inputs`` maps each input
    to text that will become its flat JSON array (e.g. ``"{{inputs.parameters.features}}"``);
    ``shapes`` gives each input's shape, checked against the declaration as in
    :func:`infer_request`.
    """
    _check_names(model, inputs, stage=stage)
    tensors = []
    tokens: dict[str, str] = {}
    for index, tensor in enumerate(model.inputs):
        if tensor.name not in shapes:
            raise _error(
                model,
                f"input {tensor.name!r} has no shape",
                fix=f"give shapes[{tensor.name!r}] as {_expected(model, tensor)}",
                field=f"inputs.{tensor.name}",
                stage=stage,
            )
        shape = check_shape(model, tensor.name, shapes[tensor.name], stage=stage)
        expression = inputs[tensor.name]
        if not isinstance(expression, str) or not expression.strip():
            raise _error(
                model,
                f"input {tensor.name!r} expression {expression!r} is empty",
                fix="give the text that yields the flat JSON array, e.g. '{{inputs.parameters.x}}'",
                field=f"inputs.{tensor.name}",
                stage=stage,
            )
        token = f"\u0000rtflow-input-{index}\u0000"
        tokens[json.dumps(token)] = expression
        tensors.append(
            {
                "name": tensor.name,
                "shape": list(shape),
                "datatype": KSERVE_DATATYPES[tensor.data_type],
                "data": token,
            }
        )
    text = json.dumps(
        {"inputs": tensors, "outputs": _outputs(model, outputs, stage=stage)},
        separators=(",", ":"),
    )
    for token, expression in tokens.items():
        text = text.replace(token, expression)
    return text


@dataclass(frozen=True)
class InferOutput:
    """One output tensor of a response: flat row-major ``data`` and its ``shape``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: tuple[Any, ...]

    def nested(self) -> Any:
        """The data as nested lists of ``shape``."""
        items: list[Any] = list(self.data)
        for size in reversed(self.shape[1:]):
            items = [items[i : i + size] for i in range(0, len(items), size)] if size else []
        return items

    def rows(self) -> list[Any]:
        """Alias of :meth:`nested`, reading naturally for batched outputs."""
        return list(self.nested())


def parse_infer_response(
    model: TritonModel, response: Mapping[str, Any] | str | bytes
) -> dict[str, InferOutput]:
    """Read a KServe v2 JSON response into named outputs, checked against the declaration.

    Raises :class:`InferenceError` for an error response (``{"error": ...}``), an output the
    model does not declare, a wrong datatype, or data that does not fill its shape.
    """
    if isinstance(response, (str, bytes)):
        try:
            parsed: Any = json.loads(response)
        except ValueError as exc:
            raise InferenceError(f"model {model.name!r}: response is not JSON ({exc})") from None
    else:
        parsed = response
    if not isinstance(parsed, Mapping):
        raise InferenceError(f"model {model.name!r}: response is not a JSON object")
    if "error" in parsed:
        raise InferenceError(f"model {model.name!r}: Triton answered: {parsed['error']}")
    raw_outputs = parsed.get("outputs")
    if not isinstance(raw_outputs, list):
        raise InferenceError(f"model {model.name!r}: response has no outputs list")
    declared = {t.name: t for t in model.outputs}
    result: dict[str, InferOutput] = {}
    for raw in raw_outputs:
        if not isinstance(raw, Mapping):
            raise InferenceError(f"model {model.name!r}: an output is not a JSON object")
        name = raw.get("name")
        if name not in declared:
            raise InferenceError(
                f"model {model.name!r}: response has output {name!r}, which the model does not "
                f"declare ({', '.join(declared)})"
            )
        datatype = raw.get("datatype")
        want = KSERVE_DATATYPES[declared[name].data_type]
        if datatype != want:
            raise InferenceError(
                f"model {model.name!r}: output {name!r} is {datatype!r}, declared {want!r}"
            )
        shape = raw.get("shape")
        data = raw.get("data")
        if (
            not isinstance(shape, list)
            or not all(isinstance(d, int) and d >= 0 for d in shape)
            or not isinstance(data, list)
            or len(data) != math.prod(shape)
        ):
            raise InferenceError(
                f"model {model.name!r}: output {name!r} data does not fill its shape {shape!r}"
                " (binary outputs are not read here: do not ask for binary_data)"
            )
        result[name] = InferOutput(
            name=name, datatype=datatype, shape=tuple(shape), data=tuple(data)
        )
    return result
