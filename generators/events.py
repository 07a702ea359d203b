"""A pipeline's triggers as Argo Events objects: EventSources, one Sensor, optionally an EventBus.

These are plain dicts checked against the Argo Events 1.9.11 schema in the tests: hera's
``hera.events.models`` come from an older Argo Events and mis-shape fields 1.9 has (the flat
webhook context, Int64OrString and Amount in Backoff, EventBus is missing).

The Sensor starts each run with a ``k8s`` trigger that creates the Workflow object directly
from the WorkflowTemplate (``workflowTemplateRef``). The alternative, the ``argoWorkflow``
trigger, runs the argo CLI inside the sensor pod for every event: a process start per event,
and an image that must carry the CLI. Creating the object needs only RBAC to create Workflows,
and costs one API call.
"""

from __future__ import annotations

from typing import Any

from rtflow import ir
from rtflow.generators import labels, security

API_VERSION = "argoproj.io/v1alpha1"
WORKFLOW_PARAMETER_DEST = "spec.arguments.parameters.{index}.value"
# Sensor and EventSource pods: small, bounded, locked down like every generated pod.
_EVENTS_RESOURCES = {
    "requests": {"cpu": "50m", "ephemeral-storage": "64Mi", "memory": "64Mi"},
    "limits": {"cpu": "500m", "ephemeral-storage": "256Mi", "memory": "256Mi"},
}

Document = dict[str, Any]


def event_source_name(pipeline: ir.Pipeline, trigger: ir.Trigger) -> str:
    return f"{pipeline.name}-{trigger.name}"


def sensor_name(pipeline: ir.Pipeline) -> str:
    return pipeline.name


def sensor_service_account(pipeline: ir.Pipeline) -> str:
    return f"{pipeline.name}-sensor"


def _metadata(pipeline: ir.Pipeline, name: str, component: str) -> Document:
    metadata: Document = {"name": name}
    if pipeline.namespace:
        metadata["namespace"] = pipeline.namespace
    metadata["labels"] = labels.standard_labels(pipeline, component)
    return metadata


def _pod_template(service_account: str | None = None) -> Document:
    template: Document = {}
    if service_account:
        template["serviceAccountName"] = service_account
    template["securityContext"] = security.pod_security_context().model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )
    template["container"] = {
        "resources": _EVENTS_RESOURCES,
        "securityContext": security.container_security_context().model_dump(
            by_alias=True, exclude_none=True, mode="json"
        ),
    }
    return template


def _secret(key: ir.SecretKey | None) -> Document | None:
    return None if key is None else {"name": key.secret, "key": key.key}


def _tls(tls: ir.Tls | None) -> Document | None:
    if tls is None:
        return None
    document: Document = {}
    for field, value in (
        ("caCertSecret", tls.ca_cert),
        ("clientCertSecret", tls.client_cert),
        ("clientKeySecret", tls.client_key),
    ):
        if value is not None:
            document[field] = _secret(value)
    if tls.insecure_skip_verify:
        document["insecureSkipVerify"] = True
    return document


def _sasl(sasl: ir.Sasl | None) -> Document | None:
    if sasl is None:
        return None
    return {
        "mechanism": sasl.mechanism,
        "userSecret": _secret(sasl.user),
        "passwordSecret": _secret(sasl.password),
    }


READ_COMMITTED = "consumer:\n  isolationLevel: 1\n"
"""The Kafka EventSource's Sarama config that skips aborted transactions' records: Argo Events
1.9 reads ``config`` with viper into ``sarama.Config`` (keys case-insensitive), where
``Consumer.IsolationLevel`` 1 is ``ReadCommitted`` (checked against v1.9.11's
``GetSaramaConfigFromYAMLString``: 2 fails its validation, none leaves ``ReadUncommitted``)."""


def _without_none(document: Document) -> Document:
    return {k: v for k, v in document.items() if v is not None}


def event_source(pipeline: ir.Pipeline, trigger: ir.Trigger) -> Document:
    source = trigger.source
    spec: Document = {"eventBusName": pipeline.event_bus_name, "template": _pod_template()}
    if isinstance(source, ir.KafkaSource):
        spec["kafka"] = {
            trigger.name: _without_none(
                {
                    "url": ",".join(source.brokers),
                    "topic": source.topic,
                    "jsonBody": source.json_body,
                    "consumerGroup": {"groupName": source.consumer_group, "oldest": source.oldest},
                    "limitEventsPerSecond": source.limit_events_per_second,
                    "tls": _tls(source.tls),
                    "sasl": _sasl(source.sasl),
                    "version": source.version,
                    "config": READ_COMMITTED if source.read_committed else None,
                }
            )
        }
    elif isinstance(source, ir.WebhookSource):
        spec["service"] = {"ports": [{"port": source.port, "targetPort": source.port}]}
        spec["webhook"] = {
            trigger.name: _without_none(
                {
                    "endpoint": source.endpoint,
                    "method": source.method,
                    "port": str(source.port),
                    "url": "",
                    "authSecret": _secret(source.auth_secret),
                    "serverCertSecret": _secret(source.server_cert),
                    "serverKeySecret": _secret(source.server_key),
                    "maxPayloadSize": source.max_payload_size,
                }
            )
        }
    else:
        spec["calendar"] = {
            trigger.name: _without_none(
                {
                    "schedule": source.schedule,
                    "interval": source.interval,
                    "timezone": source.timezone,
                }
            )
        }
    return {
        "apiVersion": API_VERSION,
        "kind": "EventSource",
        "metadata": _metadata(pipeline, event_source_name(pipeline, trigger), "event-source"),
        "spec": spec,
    }


def _dependency(pipeline: ir.Pipeline, trigger: ir.Trigger) -> Document:
    dependency: Document = {
        "name": trigger.name,
        "eventSourceName": event_source_name(pipeline, trigger),
        "eventName": trigger.name,
    }
    filters: Document = {}
    if trigger.data_filters:
        filters["data"] = [
            {"path": f.path, "type": f.type, "comparator": f.comparator, "value": list(f.values)}
            for f in trigger.data_filters
        ]
        filters["dataLogicalOperator"] = "and"
    if trigger.expr_filters:
        filters["exprs"] = [
            {"expr": f.expr, "fields": [{"name": n, "path": p} for p, n in f.fields]}
            for f in trigger.expr_filters
        ]
    if filters:
        dependency["filters"] = filters
    return dependency


def _workflow(pipeline: ir.Pipeline, trigger: ir.Trigger) -> Document:
    # No namespace: Argo Events creates the Workflow in the Sensor's own namespace, so it
    # follows the Sensor when an environment's overlay moves it (kustomize's namespace
    # transformer does not reach into a trigger's resource), and the Sensor's Role, which
    # allows creating Workflows only there, always fits.
    metadata: Document = {"generateName": f"{pipeline.name}-"}
    metadata["labels"] = {
        **labels.standard_labels(pipeline, "workflow"),
        labels.TRIGGER: trigger.name,
    }
    spec: Document = {"workflowTemplateRef": {"name": pipeline.name}}
    if trigger.inputs:
        spec["arguments"] = {
            "parameters": [
                {"name": m.input, "value": m.default if m.default is not None else ""}
                for m in trigger.inputs
            ]
        }
    return {"apiVersion": API_VERSION, "kind": "Workflow", "metadata": metadata, "spec": spec}


def _start_trigger(pipeline: ir.Pipeline, trigger: ir.Trigger) -> Document:
    parameters = []
    for index, mapping in enumerate(trigger.inputs):
        source: Document = {"dependencyName": trigger.name}
        if mapping.path is not None:
            source["dataKey"] = mapping.path
        if mapping.default is not None:
            source["value"] = mapping.default
        parameters.append({"src": source, "dest": WORKFLOW_PARAMETER_DEST.format(index=index)})
    k8s: Document = {
        "operation": "create",
        "source": {"resource": _workflow(pipeline, trigger)},
    }
    if parameters:
        k8s["parameters"] = parameters
    delivery = trigger.delivery
    document: Document = {
        "template": {"name": f"start-{trigger.name}", "conditions": trigger.name, "k8s": k8s},
        "atLeastOnce": delivery.at_least_once,
    }
    if delivery.retries:
        document["retryStrategy"] = {
            "steps": delivery.retries,
            "duration": delivery.backoff,
            "factor": float(delivery.backoff_factor),
            "jitter": float(delivery.backoff_jitter),
        }
    if delivery.rate_limit is not None:
        document["rateLimit"] = {
            "unit": delivery.rate_limit_unit,
            "requestsPerUnit": delivery.rate_limit,
        }
    if delivery.dead_letter is not None:
        document["dlqTrigger"] = _dead_letter(pipeline, trigger, delivery.dead_letter)
    return document


def _dead_letter(pipeline: ir.Pipeline, trigger: ir.Trigger, dlq: ir.DeadLetter) -> Document:
    """The whole event, with where it was going, on a Kafka topic: nothing is dropped silently.

    The record has the local run's keys (``rtflow.stages.dead_letters.letter``): ``event`` is
    the event's id, ``payload`` its data as JSON (what ``inputs=`` paths address: ``body``,
    ``header``, Kafka's ``key``...). The data is selected with the gjson path ``@this`` and
    ``useRawData``, which embeds it as JSON: without a key, Argo Events' sensor writes the
    whole event envelope marshalled into a string, its data base64-encoded inside (seen on the
    real sensor, v1.9.11), and ``useRawData`` has no effect on such a string."""
    payload = [
        {"src": {"dependencyName": trigger.name, "contextKey": "id"}, "dest": "event"},
        {
            "src": {"dependencyName": trigger.name, "dataKey": "@this", "useRawData": True},
            "dest": "payload",
        },
        {"src": {"dependencyName": trigger.name, "value": pipeline.name}, "dest": "pipeline"},
        {"src": {"dependencyName": trigger.name, "value": trigger.name}, "dest": "trigger"},
        {
            "src": {"dependencyName": trigger.name, "value": "failed to start the workflow"},
            "dest": "reason",
        },
    ]
    kafka = _without_none(
        {
            "url": ",".join(dlq.brokers),
            "topic": dlq.topic,
            "payload": payload,
            "requiredAcks": -1,
            "tls": _tls(dlq.tls),
            "sasl": _sasl(dlq.sasl),
        }
    )
    return {
        "template": {"name": f"dead-letter-{trigger.name}", "kafka": kafka},
        "atLeastOnce": True,
    }


def sensor(pipeline: ir.Pipeline) -> Document:
    return {
        "apiVersion": API_VERSION,
        "kind": "Sensor",
        "metadata": _metadata(pipeline, sensor_name(pipeline), "sensor"),
        "spec": {
            "eventBusName": pipeline.event_bus_name,
            "template": _pod_template(sensor_service_account(pipeline)),
            "dependencies": [_dependency(pipeline, t) for t in pipeline.triggers],
            "triggers": [_start_trigger(pipeline, t) for t in pipeline.triggers],
        },
    }


def event_bus(pipeline: ir.Pipeline, bus: ir.EventBus) -> Document:
    persistence: Document = {"accessMode": "ReadWriteOnce", "volumeSize": bus.storage}
    if bus.storage_class:
        persistence["storageClassName"] = bus.storage_class
    return {
        "apiVersion": API_VERSION,
        "kind": "EventBus",
        "metadata": _metadata(pipeline, bus.name, "event-bus"),
        "spec": {
            "jetstream": {
                "version": bus.version,
                "replicas": bus.replicas,
                "persistence": persistence,
                "securityContext": security.pod_security_context().model_dump(
                    by_alias=True, exclude_none=True, mode="json"
                ),
            }
        },
    }


def documents(pipeline: ir.Pipeline) -> list[Document]:
    """Every Argo Events object the pipeline needs (none when it has no triggers)."""
    if not pipeline.triggers:
        return []
    docs = [event_source(pipeline, t) for t in pipeline.triggers]
    docs.append(sensor(pipeline))
    if pipeline.event_bus is not None:
        docs.append(event_bus(pipeline, pipeline.event_bus))
    return docs
