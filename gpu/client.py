"""The gRPC request path: a declared model called through tritonclient.

What the built-in Triton client stage uses for large tensors (the Argo ``http`` step uses the
JSON body of :mod:`rtflow.gpu.kserve`). Inputs are checked against the model's declaration on
their numpy metadata only (names, shapes, dtype conversion), never element by element, so the
check costs microseconds whatever the tensor size. Needs the ``triton`` extra (tritonclient,
numpy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from rtflow.errors import DefinitionError
from rtflow.gpu.kserve import KSERVE_DATATYPES, InferenceError, check_shape
from rtflow.gpu.models import TritonModel
from rtflow.gpu.text_tensors import BYTES, TextDecodeError, decoded, text_problem

if TYPE_CHECKING:
    import numpy as np

__all__ = ["NUMPY_DTYPES", "TritonGrpcClient"]

NUMPY_DTYPES: Final[dict[str, str]] = {
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_UINT16": "uint16",
    "TYPE_UINT32": "uint32",
    "TYPE_UINT64": "uint64",
    "TYPE_INT8": "int8",
    "TYPE_INT16": "int16",
    "TYPE_INT32": "int32",
    "TYPE_INT64": "int64",
    "TYPE_FP16": "float16",
    "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
    "TYPE_STRING": "object",
    "TYPE_BF16": "float32",
}
"""Triton data type -> the numpy dtype tritonclient sends it from."""


@dataclass(frozen=True)
class _Input:
    name: str
    datatype: str
    dtype: Any
    dims: tuple[int, ...]
    fixed: bool


class TritonGrpcClient:
    """Call one declared model over gRPC; reuse one client per process (it keeps a channel).

    The per-call check is kept to a few attribute comparisons (the declaration is digested once
    here), so the path costs about what a bare tritonclient call costs.
    """

    def __init__(self, url: str, model: TritonModel, *, timeout_seconds: float | None = None):
        import numpy as np
        import tritonclient.grpc as grpcclient  # type: ignore[import-untyped, unused-ignore]
        from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped, unused-ignore]

        self.model = model
        self.timeout_seconds = timeout_seconds
        self._np: Any = np
        self._grpc: Any = grpcclient
        self._server_error: type[Exception] = InferenceServerException
        self._client: Any = grpcclient.InferenceServerClient(url=url)
        self._outputs = [grpcclient.InferRequestedOutput(t.name) for t in model.outputs]
        self._output_names = [t.name for t in model.outputs]
        # BYTES outputs come back as bytes; rtflow's text is str, as the KServe JSON answer has it
        self._text_outputs = [t.name for t in model.outputs if t.data_type == "TYPE_STRING"]
        self._inputs = [
            _Input(
                name=t.name,
                datatype=KSERVE_DATATYPES[t.data_type],
                dtype=np.dtype(NUMPY_DTYPES[t.data_type]),
                dims=t.dims,
                fixed=-1 not in t.dims,
            )
            for t in model.inputs
        ]

    def _shape_ok(self, spec: _Input, shape: tuple[int, ...]) -> bool:
        model = self.model
        if model.batched:
            if len(shape) != len(spec.dims) + 1 or not 1 <= shape[0] <= model.max_batch_size:
                return False
            shape = shape[1:]
        if spec.fixed:
            return shape == spec.dims
        return len(shape) == len(spec.dims) and all(
            want in (-1, got) for want, got in zip(spec.dims, shape, strict=True)
        )

    def _names_error(self, inputs: Mapping[str, Any], stage: str | None) -> DefinitionError:
        declared = [spec.name for spec in self._inputs]
        unknown = sorted(set(inputs) - set(declared))
        missing = [name for name in declared if name not in inputs]
        name = unknown[0] if unknown else missing[0]
        return DefinitionError(
            f"model {self.model.name!r}: "
            + (f"has no input {name!r}" if unknown else f"input {name!r} is missing"),
            fix=f"give exactly the declared inputs: {', '.join(declared)}",
            field=f"inputs.{name}",
            stage=stage,
        )

    def prepare(self, inputs: Mapping[str, Any], *, stage: str | None = None) -> list[Any]:
        """Check ``inputs`` against the declaration and wrap them as tritonclient inputs."""
        specs = self._inputs
        if len(inputs) != len(specs) or any(spec.name not in inputs for spec in specs):
            raise self._names_error(inputs, stage)
        wrapped = []
        for spec in specs:
            value = inputs[spec.name]
            if type(value) is self._np.ndarray and value.dtype == spec.dtype:
                array = value
            else:
                try:
                    array = self._np.asarray(value, dtype=spec.dtype)
                except (TypeError, ValueError) as exc:
                    raise DefinitionError(
                        f"model {self.model.name!r}: input {spec.name!r} is not "
                        f"{spec.datatype} ({exc})",
                        fix=f"send {spec.dtype} values",
                        field=f"inputs.{spec.name}",
                        stage=stage,
                    ) from None
            shape = array.shape
            if not self._shape_ok(spec, shape):
                check_shape(self.model, spec.name, shape, stage=stage)  # raises, with the fix
            if spec.datatype == BYTES:
                problem = text_problem(array)
                if problem is not None:
                    raise DefinitionError(
                        f"model {self.model.name!r}: input {spec.name!r} is BYTES but {problem}",
                        fix="send strings (str, or bytes) for a TYPE_STRING tensor",
                        field=f"inputs.{spec.name}",
                        stage=stage,
                    )
            item = self._grpc.InferInput(spec.name, list(shape), spec.datatype)
            item.set_data_from_numpy(array)
            wrapped.append(item)
        return wrapped

    def infer(
        self, inputs: Mapping[str, Any], *, stage: str | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run the model; named numpy outputs (a text output: an object array of ``str``).
        Triton's errors become :class:`InferenceError`."""
        prepared = self.prepare(inputs, stage=stage)
        try:
            result = self._client.infer(
                self.model.name,
                prepared,
                outputs=self._outputs,
                client_timeout=self.timeout_seconds,
            )
        except self._server_error as exc:
            raise InferenceError(f"model {self.model.name!r}: Triton answered: {exc}") from None
        outputs = {name: result.as_numpy(name) for name in self._output_names}
        for name in self._text_outputs:
            array = outputs[name]
            try:
                text = decoded(array.reshape(-1).tolist())
            except TextDecodeError as exc:
                raise InferenceError(f"model {self.model.name!r}: output {name!r}: {exc}") from None
            outputs[name] = self._np.array(text, dtype=object).reshape(array.shape)
        return outputs

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> TritonGrpcClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
