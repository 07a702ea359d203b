"""A Triton server on a GPU pool: its Kubernetes objects, in the order they apply.

:func:`serving_manifests` turns a checked server declaration into a Deployment, a Service, a
PodDisruptionBudget and an autoscaler. Each concept has its module: the declaration
(:mod:`rtflow.gpu.server`), the pod and the objects around it (:mod:`rtflow.gpu.server_pod`),
the autoscaler (:mod:`rtflow.gpu.autoscalers`) and the addresses that reach a served model
(:mod:`rtflow.gpu.addresses`). This module is the public surface of them all: every name below
stays importable from ``rtflow.gpu.serving``.
"""

from __future__ import annotations

from typing import Any

from rtflow.gpu.addresses import (
    grpc_address,
    infer_url,
    model_gpu_pool,
    service_url,
    serving_for_model,
)
from rtflow.gpu.autoscalers import (
    HPA_METRICS,
    TRITON_METRICS,
    horizontal_pod_autoscaler,
    keda_query,
    keda_scaled_object,
    prometheus_adapter_rules,
)
from rtflow.gpu.server import (
    COMPONENT,
    DEFAULT_IMAGE,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    Autoscaling,
    TritonServing,
    selector_labels,
    serving_labels,
    triton_image,
    triton_serving,
)
from rtflow.gpu.server_pod import (
    container,
    deployment,
    pod_disruption_budget,
    service,
    triton_args,
)

__all__ = [
    "COMPONENT",
    "DEFAULT_IMAGE",
    "GRPC_PORT",
    "HPA_METRICS",
    "HTTP_PORT",
    "METRICS_PORT",
    "TRITON_METRICS",
    "Autoscaling",
    "TritonServing",
    "container",
    "deployment",
    "grpc_address",
    "horizontal_pod_autoscaler",
    "infer_url",
    "keda_query",
    "keda_scaled_object",
    "model_gpu_pool",
    "pod_disruption_budget",
    "prometheus_adapter_rules",
    "selector_labels",
    "service",
    "service_url",
    "serving_for_model",
    "serving_labels",
    "serving_manifests",
    "triton_args",
    "triton_image",
    "triton_serving",
]


def serving_manifests(serving: TritonServing) -> list[dict[str, Any]]:
    """Deployment, Service, PodDisruptionBudget and (when declared) the autoscaler, in order."""
    objects = [deployment(serving), service(serving), pod_disruption_budget(serving)]
    if serving.autoscaling is not None:
        if serving.autoscaling.engine == "keda":
            objects.append(keda_scaled_object(serving))
        else:
            objects.append(horizontal_pod_autoscaler(serving))
    return objects
