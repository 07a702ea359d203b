"""Monitoring the stream plane with the prometheus-operator: PodMonitors for the workers and
their Triton servers, and alerts when the plane breaks its promise.

The alerts: p99 of the workers' event latency (an input's producer timestamp to its results
produced) above the pipeline's latency budget; consumer lag above what the workers clear in
the budget and still growing; a worker whose group cannot read its committed offsets (a
transaction holds them: rtflow.stages.stream.lag); events going to the dead-letter topic; a
drift watch's last window above its threshold (``rtflow.drift``: the retraining itself starts
from the drift topic, this says it is drifting).
Each PodMonitor copies the ``rtflow.dev/pipeline`` pod label onto the series
(``rtflow_dev_pipeline``), which the alert expressions select on.
"""

from __future__ import annotations

from rtflow import ir
from rtflow.generators import labels
from rtflow.generators.stream.common import METRICS_PORT_NAME, Document, metadata, selector, stream
from rtflow.generators.stream.scaling import DEFAULT_BUDGET_MS, lag_threshold
from rtflow.generators.stream.workers import triton_servers
from rtflow.stream_layout import drift_watches, groups

API_VERSION = "monitoring.coreos.com/v1"
PIPELINE_LABEL = "rtflow_dev_pipeline"  # labels.PIPELINE as Prometheus spells a target label


def pod_monitor(pipeline: ir.Pipeline) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(pipeline, f"{pipeline.name}-stream"),
        "spec": {
            "selector": {"matchLabels": selector(pipeline)},
            "podTargetLabels": [labels.PIPELINE],
            "podMetricsEndpoints": [
                {"port": METRICS_PORT_NAME, "path": "/metrics", "interval": "15s"}
            ],
        },
    }


def triton_pod_monitor(pipeline: ir.Pipeline, server: str) -> Document:
    from rtflow.gpu.server import selector_labels

    return {
        "apiVersion": API_VERSION,
        "kind": "PodMonitor",
        "metadata": metadata(pipeline, server, component="inference-server"),
        "spec": {
            "selector": {"matchLabels": selector_labels(server)},
            "podMetricsEndpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s"}],
        },
    }


def prometheus_rule(pipeline: ir.Pipeline) -> Document:
    plane = stream(pipeline)
    budget_ms = pipeline.latency_budget_ms or DEFAULT_BUDGET_MS
    where = f'{PIPELINE_LABEL}="{pipeline.name}"'
    if pipeline.namespace:
        where += f',namespace="{pipeline.namespace}"'
    lag = f"sum(rtflow_stream_consumer_lag{{{where}}})"
    threshold = lag_threshold(plane, pipeline.latency_budget_ms) * plane.workers
    title = pipeline.name.replace("-", " ").title().replace(" ", "")
    rules = [
        {
            "alert": f"{title}StreamLatencyOverBudget",
            "expr": (
                "histogram_quantile(0.99, sum by (le) (rate("
                f"rtflow_stream_event_latency_seconds_bucket{{{where}}}[5m]))) "
                f"> {budget_ms / 1000:g}"
            ),
            "for": "5m",
            "labels": {"severity": "warning", labels.PIPELINE.replace("/", "_"): pipeline.name},
            "annotations": {
                "summary": f"{pipeline.name}: stream p99 latency above its {budget_ms} ms budget",
                "description": "The p99 of an event's producer timestamp to its results "
                "produced is {{ $value | humanizeDuration }} over 5 minutes; see the "
                "rtflow_stream_stage_batch_seconds and rtflow_stream_commit_seconds "
                "histograms for where the time goes.",
            },
        },
        {
            "alert": f"{title}StreamLagGrowing",
            "expr": f"{lag} > {threshold} and deriv({lag}[10m]) > 0",
            "for": "10m",
            "labels": {"severity": "warning", labels.PIPELINE.replace("/", "_"): pipeline.name},
            "annotations": {
                "summary": f"{pipeline.name}: the stream workers fall behind",
                "description": "Consumer lag is {{ $value }} events and still growing after "
                "10 minutes: the workers (KEDA's maximum is the topic's partitions) or their "
                "Triton cannot keep up.",
            },
        },
        {
            "alert": f"{title}StreamOffsetsUnreadable",
            "expr": f"max(rtflow_stream_unreadable_offset_partitions{{{where}}}) > 0",
            "for": "2m",
            "labels": {"severity": "critical", labels.PIPELINE.replace("/", "_"): pipeline.name},
            "annotations": {
                "summary": f"{pipeline.name}: a stream worker cannot read its committed offsets",
                "description": "{{ $value }} partitions consume nothing: an open transaction "
                "holds their group's offsets past the transaction timeout (a hanging "
                "transaction). Find it with kafka-transactions.sh find-hanging and abort it; "
                "the worker's log names the partitions.",
            },
        },
        {
            "alert": f"{title}StreamDeadLetters",
            "expr": f"sum(rate(rtflow_stream_dead_lettered_total{{{where}}}[5m])) > 0",
            "for": "15m",
            "labels": {"severity": "info", labels.PIPELINE.replace("/", "_"): pipeline.name},
            "annotations": {
                "summary": f"{pipeline.name}: events are dead-lettered",
                "description": f"Events go to {plane.dead_letter_topic} (reason in the "
                "rtflow-reason header and the metric's reason label).",
            },
        },
    ]
    for watch in drift_watches(pipeline):
        series = f'rtflow_stream_drift{{{where},stage="{watch.name}"}}'
        rules.append(
            {
                "alert": f"{title}Drift{watch.name.replace('-', ' ').title().replace(' ', '')}",
                "expr": f"max({series}) > {watch.threshold:g}",
                "labels": {"severity": "info", labels.PIPELINE.replace("/", "_"): pipeline.name},
                "annotations": {
                    "summary": f"{pipeline.name}: {watch.name} drifted past {watch.threshold:g}",
                    "description": "The last full window's statistic is {{ $value }}; each "
                    f"window is published to {watch.topic}, and its crossings start the "
                    "retraining that rtflow.on_drift triggers.",
                },
            }
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "PrometheusRule",
        "metadata": metadata(pipeline, f"{pipeline.name}-stream"),
        "spec": {"groups": [{"name": f"{pipeline.name}-stream", "rules": rules}]},
    }


def documents(pipeline: ir.Pipeline) -> list[Document]:
    servers = sorted({s for g in groups(pipeline) for s in triton_servers(pipeline, g)})
    return [
        pod_monitor(pipeline),
        *(triton_pod_monitor(pipeline, s) for s in servers),
        prometheus_rule(pipeline),
    ]
