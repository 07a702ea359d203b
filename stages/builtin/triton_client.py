"""The built-in Triton client stage: one gRPC inference call, for tensors too large for JSON.

``rtflow.infer(..., via="grpc")`` compiles to a container step running this function in the
``triton-client`` image. It asks Triton for the model's metadata (names, datatypes, batching),
so the step needs no copy of the declaration, and answers in the same shape as the KServe v2
REST response (``outputs[i].name/datatype/shape/data``), so downstream stages read either path
the same way.
"""

from __future__ import annotations

from typing import Any

import rtflow
from rtflow.gpu.text_tensors import BYTES, decoded, text_problem
from rtflow.stages.builtin import image as builtin_image
from rtflow.stages.runtime import BadInput


@rtflow.stage(image=builtin_image("triton-client"), cpu="500m", memory="1Gi")
def triton_infer(
    url: str,
    model: str,
    tensors: dict[str, Any],
    timeout_seconds: float = 10.0,
    model_version: str = "",
) -> dict[str, Any]:
    """Infer ``model`` at the gRPC ``url`` on ``tensors`` (name -> nested list; a text tensor's
    elements are str). ``model_version``: that version by number (a model under canary is
    compiled to its declared stable version); empty, the one Triton's version policy picks."""
    import numpy as np
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import triton_to_np_dtype

    client = grpcclient.InferenceServerClient(url)
    try:
        metadata = client.get_model_metadata(model, model_version, as_json=True)
        config = client.get_model_config(model, model_version, as_json=True)["config"]
        batched = int(config.get("max_batch_size", 0)) > 0
        requests = []
        for spec in metadata["inputs"]:
            if spec["name"] not in tensors:
                raise ValueError(f"input {spec['name']!r} of {model!r} is missing")
            array = np.asarray(tensors[spec["name"]], dtype=triton_to_np_dtype(spec["datatype"]))
            if batched and array.ndim == len(spec["shape"]) - 1:
                array = array[np.newaxis, ...]
            problem = text_problem(array) if spec["datatype"] == BYTES else None
            if problem is not None:
                # the same tensors fail the same way again: no retry, a dead letter at once
                raise BadInput(f"input {spec['name']!r} of {model!r} is BYTES but {problem}")
            tensor = grpcclient.InferInput(spec["name"], list(array.shape), spec["datatype"])
            tensor.set_data_from_numpy(array)
            requests.append(tensor)
        result = client.infer(
            model, requests, model_version=model_version, client_timeout=timeout_seconds
        )
        outputs = []
        for spec in metadata["outputs"]:
            array = result.as_numpy(spec["name"])
            data = array.reshape(-1).tolist()
            if spec["datatype"] == BYTES:
                data = decoded(data)  # bytes -> str: the JSON answer's text, never bytes
            outputs.append(
                {
                    "name": spec["name"],
                    "datatype": spec["datatype"],
                    "shape": list(array.shape),
                    "data": data,
                }
            )
        return {"model_name": model, "outputs": outputs}
    finally:
        client.close()
