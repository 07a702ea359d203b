"""The autoscaler of a Triton server: an autoscaling/v2 HPA on a custom metric (and the
prometheus-adapter rules that define it), or a KEDA ScaledObject with a Prometheus trigger.

Both scale on Triton's own Prometheus metrics (:data:`TRITON_METRICS`): queue time per request
or pending requests, as the server's :class:`~rtflow.gpu.server.Autoscaling` says. Why HPA is the
default and KEDA the option: ``gpu/README.md``.
"""

from __future__ import annotations

from typing import Any, Final

from rtflow.errors import DefinitionError
from rtflow.gpu.server import Autoscaling, TritonServing, _metadata, _problem

__all__ = [
    "HPA_METRICS",
    "TRITON_METRICS",
    "horizontal_pod_autoscaler",
    "keda_query",
    "keda_scaled_object",
    "prometheus_adapter_rules",
]

# Triton's Prometheus metrics the autoscalers read (per model and version).
TRITON_METRICS: Final = {
    "queue_duration": "nv_inference_queue_duration_us",
    "request_success": "nv_inference_request_success",
    "pending": "nv_inference_pending_request_count",
}
HPA_METRICS: Final[dict[str, str]] = {
    "queue_time": "triton_queue_time_per_request_us",
    "pending_requests": "triton_pending_requests",
}
"""The per-pod custom metrics an HPA reads; :func:`prometheus_adapter_rules` defines them."""


def _required_autoscaling(serving: TritonServing) -> Autoscaling:
    if serving.autoscaling is None:
        raise DefinitionError(
            _problem(serving.name, "has no autoscaling"),
            fix="give autoscaling=Autoscaling(...)",
            field="autoscaling",
        )
    return serving.autoscaling


def _scale_target(serving: TritonServing) -> dict[str, str]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "name": serving.name}


def horizontal_pod_autoscaler(serving: TritonServing) -> dict[str, Any]:
    """autoscaling/v2 HPA on a per-pod custom metric served by prometheus-adapter."""
    scaling = _required_autoscaling(serving)
    metric: dict[str, Any] = {"name": HPA_METRICS[scaling.metric]}
    if scaling.model is not None:
        metric["selector"] = {"matchLabels": {"model": scaling.model}}
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(serving),
        "spec": {
            "scaleTargetRef": _scale_target(serving),
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": metric,
                        "target": {"type": "AverageValue", "averageValue": str(scaling.target)},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                },
            },
        },
    }


def prometheus_adapter_rules(serving: TritonServing) -> dict[str, Any]:
    """The prometheus-adapter ``rules`` that define :data:`HPA_METRICS` from Triton's metrics.

    Merge them into the adapter's configuration (Helm value ``rules.custom``). They assume the
    usual Kubernetes scrape labels ``namespace`` and ``pod`` on Triton's series.
    """
    scaling = _required_autoscaling(serving)
    window = scaling.window
    resources = {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}
    queue, success, pending = (
        TRITON_METRICS["queue_duration"],
        TRITON_METRICS["request_success"],
        TRITON_METRICS["pending"],
    )
    rules = [
        {
            "seriesQuery": f'{queue}{{namespace!="",pod!=""}}',
            "resources": resources,
            "name": {"matches": f"^{queue}$", "as": HPA_METRICS["queue_time"]},
            "metricsQuery": (
                f"sum(increase({queue}{{<<.LabelMatchers>>}}[{window}])) by (<<.GroupBy>>)"
                f" / (1 + sum(increase({success}{{<<.LabelMatchers>>}}[{window}]))"
                " by (<<.GroupBy>>))"
            ),
        },
        {
            "seriesQuery": f'{pending}{{namespace!="",pod!=""}}',
            "resources": resources,
            "name": {"matches": f"^{pending}$", "as": HPA_METRICS["pending_requests"]},
            "metricsQuery": f"sum({pending}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)",
        },
    ]
    return {"rules": rules}


def keda_query(serving: TritonServing) -> tuple[str, str]:
    """The PromQL query and KEDA metricType of the autoscaling target."""
    scaling = _required_autoscaling(serving)
    matchers = []
    if serving.namespace:
        matchers.append(f'namespace="{serving.namespace}"')
    matchers.append(f'pod=~"{serving.name}-[a-z0-9]+-[a-z0-9]+"')
    if scaling.model is not None:
        matchers.append(f'model="{scaling.model}"')
    labels = "{" + ",".join(matchers) + "}"
    if scaling.metric == "pending_requests":
        return f"sum({TRITON_METRICS['pending']}{labels})", "AverageValue"
    window = scaling.window
    query = (
        f"sum(increase({TRITON_METRICS['queue_duration']}{labels}[{window}]))"
        f" / (1 + sum(increase({TRITON_METRICS['request_success']}{labels}[{window}])))"
    )
    return query, "Value"


def keda_scaled_object(serving: TritonServing) -> dict[str, Any]:
    """A KEDA ``ScaledObject`` (keda.sh/v1alpha1) with a Prometheus trigger."""
    scaling = _required_autoscaling(serving)
    query, metric_type = keda_query(serving)
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _metadata(serving),
        "spec": {
            "scaleTargetRef": _scale_target(serving),
            "minReplicaCount": scaling.min_replicas,
            "maxReplicaCount": scaling.max_replicas,
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": scaling.scale_down_stabilization_seconds
                        }
                    }
                }
            },
            "triggers": [
                {
                    "type": "prometheus",
                    "metricType": metric_type,
                    "metadata": {
                        "serverAddress": scaling.prometheus_url,
                        "query": query,
                        "threshold": str(scaling.target),
                    },
                }
            ],
        },
    }
