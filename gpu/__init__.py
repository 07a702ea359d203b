"""GPU pools and Triton: models, config.pbtxt, serving manifests, KServe v2 requests, a launcher.

Submodules:

* :mod:`rtflow.gpu.pools`: GPU node pools and pod placement (node selectors, tolerations, MIG).
* :mod:`rtflow.gpu.models`: a Triton model declaration, checked once (``triton_model``).
* :mod:`rtflow.gpu.tensors`: a model's input and output tensors and Triton data types.
* :mod:`rtflow.gpu.scheduling`: queue policy, dynamic batching, instance groups, version policy,
  warm-up.
* :mod:`rtflow.gpu.repository`: where a model repository lives; a model's version folders.
* :mod:`rtflow.gpu.config`: ``config.pbtxt`` (jinja2) and the model-repository layout.
* :mod:`rtflow.gpu.ensemble`: Triton ensembles (``triton_ensemble``), their data flow checked
  once; :mod:`rtflow.gpu.llm_ensemble`: TensorRT-LLM's text ensemble.
* :mod:`rtflow.gpu.serving`: a Triton server's Kubernetes objects (``serving_manifests``), and
  the public names of the four modules it is made of:
* :mod:`rtflow.gpu.server`: a Triton server declaration, checked once (``triton_serving``).
* :mod:`rtflow.gpu.server_pod`: the server's pod, Deployment, Service and PodDisruptionBudget.
* :mod:`rtflow.gpu.autoscalers`: its HPA (and prometheus-adapter rules) or KEDA ScaledObject.
* :mod:`rtflow.gpu.addresses`: which server serves a model, and its in-cluster addresses.
* :mod:`rtflow.gpu.kserve`: the KServe v2 JSON request body and response parser.
* :mod:`rtflow.gpu.client`: the gRPC request path (tritonclient).
* :mod:`rtflow.gpu.triton_server`: a real local Triton (from the nvidia-pytriton wheel).

The names below are importable from ``rtflow.gpu`` directly; they load on first use, so
``import rtflow.gpu.triton_server`` stays free of hera and jinja2.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rtflow.gpu.config import render_config, repository_layout, write_repository
    from rtflow.gpu.ensemble import EnsembleStep, step_models, triton_ensemble
    from rtflow.gpu.kserve import infer_request, parse_infer_response
    from rtflow.gpu.models import TritonModel, triton_model
    from rtflow.gpu.pools import GpuPool, Toleration, gpu_pool, placement
    from rtflow.gpu.repository import model_repository
    from rtflow.gpu.scheduling import (
        DynamicBatching,
        InstanceGroup,
        QueuePolicy,
        VersionPolicy,
        Warmup,
    )
    from rtflow.gpu.server import Autoscaling, TritonServing, triton_serving
    from rtflow.gpu.serving import serving_manifests
    from rtflow.gpu.tensors import Tensor

_EXPORTS = {
    "render_config": "config",
    "repository_layout": "config",
    "write_repository": "config",
    "EnsembleStep": "ensemble",
    "step_models": "ensemble",
    "triton_ensemble": "ensemble",
    "infer_request": "kserve",
    "parse_infer_response": "kserve",
    "DynamicBatching": "scheduling",
    "InstanceGroup": "scheduling",
    "QueuePolicy": "scheduling",
    "Tensor": "tensors",
    "TritonModel": "models",
    "VersionPolicy": "scheduling",
    "Warmup": "scheduling",
    "model_repository": "repository",
    "triton_model": "models",
    "GpuPool": "pools",
    "Toleration": "pools",
    "gpu_pool": "pools",
    "placement": "pools",
    "Autoscaling": "server",
    "TritonServing": "server",
    "serving_manifests": "serving",
    "triton_serving": "server",
}

__all__ = [
    "Autoscaling",
    "DynamicBatching",
    "EnsembleStep",
    "GpuPool",
    "InstanceGroup",
    "QueuePolicy",
    "Tensor",
    "Toleration",
    "TritonModel",
    "TritonServing",
    "VersionPolicy",
    "Warmup",
    "gpu_pool",
    "infer_request",
    "model_repository",
    "parse_infer_response",
    "placement",
    "render_config",
    "repository_layout",
    "serving_manifests",
    "step_models",
    "triton_ensemble",
    "triton_model",
    "triton_serving",
    "write_repository",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rtflow.gpu' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"rtflow.gpu.{module}"), name)
    globals()[name] = value
    return value
