"""Triggers: Argo Events objects and RBAC, every kind, filter and delivery path, and bad input."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import strict_schema
from compiled import ROOT, compile_docs

import rtflow
from rtflow.errors import BundleError, DefinitionError
from rtflow.generators import bundle as bundle_module
from rtflow.generators.compiler import compile_pipelines
from rtflow.loader import load_pipelines

IMAGE = "ghcr.io/acme/tools:1.0"
BROKERS = ["kafka-0.kafka:9092"]


@rtflow.stage(image=IMAGE)
def handle(order: dict[str, Any], amount: float, urgent: bool = False) -> None:
    del order, amount, urgent


def make(*triggers: rtflow.triggers.Trigger, **options: Any) -> rtflow.Pipeline:
    @rtflow.pipeline(name="orders", triggers=list(triggers), **options)
    def orders(order: dict[str, Any], amount: float = 0.0, urgent: bool = False) -> None:
        handle(order=order, amount=amount, urgent=urgent)

    return orders


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    return kinds


def error_of(pipeline: rtflow.Pipeline) -> DefinitionError:
    with pytest.raises(DefinitionError) as caught:
        pipeline.build()
    assert "\n" not in str(caught.value)
    return caught.value


SCHEMA = {"id": str, "amount": float, "action": str, "vip": bool, "items": list[dict[str, Any]]}


def kafka(**overrides: Any) -> rtflow.triggers.Trigger:
    options: dict[str, Any] = {
        "brokers": BROKERS,
        "inputs": {"order": "body", "amount": rtflow.field("body.amount", default=1.5)},
        "payload_schema": SCHEMA,
    }
    options.update(overrides)
    return rtflow.kafka("orders.v1", **options)


def test_kafka_event_source() -> None:
    trigger = kafka(
        consumer_group="orders-scorer",
        start="oldest",
        limit_events_per_second=50,
        tls=rtflow.Tls(ca_cert=rtflow.SecretKey("kafka-ca", "ca.crt")),
        sasl=rtflow.Sasl(
            user=rtflow.SecretKey("kafka-user", "username"),
            password=rtflow.SecretKey("kafka-user", "password"),
            mechanism="SCRAM-SHA-256",
        ),
    )
    (source,) = by_kind(compile_docs(make(trigger)))["EventSource"]
    assert source["metadata"]["name"] == "orders-orders-v1"
    assert source["spec"]["eventBusName"] == "default"
    assert source["spec"]["kafka"] == {
        "orders-v1": {
            "url": "kafka-0.kafka:9092",
            "topic": "orders.v1",
            "jsonBody": True,
            "consumerGroup": {"groupName": "orders-scorer", "oldest": True},
            "limitEventsPerSecond": 50,
            "tls": {"caCertSecret": {"name": "kafka-ca", "key": "ca.crt"}},
            "sasl": {
                "mechanism": "SCRAM-SHA-256",
                "userSecret": {"name": "kafka-user", "key": "username"},
                "passwordSecret": {"name": "kafka-user", "key": "password"},
            },
        }
    }
    template = source["spec"]["template"]
    assert template["securityContext"]["runAsNonRoot"] is True
    assert template["container"]["securityContext"]["readOnlyRootFilesystem"] is True
    assert set(template["container"]["resources"]["limits"]) == {
        "cpu",
        "ephemeral-storage",
        "memory",
    }


def test_sensor_creates_a_workflow_from_the_template_with_mapped_inputs() -> None:
    (sensor,) = by_kind(compile_docs(make(kafka())))["Sensor"]
    spec = sensor["spec"]
    assert spec["template"]["serviceAccountName"] == "orders-sensor"
    assert spec["dependencies"] == [
        {"name": "orders-v1", "eventSourceName": "orders-orders-v1", "eventName": "orders-v1"}
    ]
    (trigger,) = spec["triggers"]
    template = trigger["template"]
    assert template["conditions"] == "orders-v1"
    k8s = template["k8s"]
    assert k8s["operation"] == "create"
    workflow = k8s["source"]["resource"]
    assert workflow["kind"] == "Workflow"
    assert workflow["metadata"]["generateName"] == "orders-"
    assert workflow["spec"]["workflowTemplateRef"] == {"name": "orders"}
    assert workflow["spec"]["arguments"]["parameters"] == [
        {"name": "amount", "value": "1.5"},
        {"name": "order", "value": ""},
    ]
    assert k8s["parameters"] == [
        {
            "src": {"dependencyName": "orders-v1", "dataKey": "body.amount", "value": "1.5"},
            "dest": "spec.arguments.parameters.0.value",
        },
        {
            "src": {"dependencyName": "orders-v1", "dataKey": "body"},
            "dest": "spec.arguments.parameters.1.value",
        },
    ]


def test_delivery_at_least_once_retry_rate_limit_and_dead_letter() -> None:
    trigger = kafka(
        delivery=rtflow.Delivery(
            retries=4,
            backoff="2s",
            backoff_factor=3,
            rate_limit=20,
            rate_limit_unit="Minute",
            dead_letter=rtflow.DeadLetter("orders-dlq"),
        ),
        sasl=rtflow.Sasl(
            user=rtflow.SecretKey("kafka-user", "username"),
            password=rtflow.SecretKey("kafka-user", "password"),
        ),
    )
    (sensor,) = by_kind(compile_docs(make(trigger)))["Sensor"]
    (start,) = sensor["spec"]["triggers"]
    assert start["atLeastOnce"] is True
    assert start["retryStrategy"] == {"steps": 4, "duration": "2s", "factor": 3.0, "jitter": 0.1}
    assert start["rateLimit"] == {"unit": "Minute", "requestsPerUnit": 20}
    dlq = start["dlqTrigger"]
    assert dlq["atLeastOnce"] is True
    kafka_out = dlq["template"]["kafka"]
    assert kafka_out["topic"] == "orders-dlq"
    assert kafka_out["url"] == "kafka-0.kafka:9092"  # the source's brokers by default
    assert kafka_out["sasl"]["passwordSecret"] == {"name": "kafka-user", "key": "password"}
    assert kafka_out["requiredAcks"] == -1
    # The local run's keys; the data embedded as JSON (a bare useRawData gave the sensor's
    # whole envelope as a string, the data base64 inside it: the events tier's real sensor)
    by_dest = {p["dest"]: p["src"] for p in kafka_out["payload"]}
    assert by_dest["event"] == {"dependencyName": "orders-v1", "contextKey": "id"}
    assert by_dest["payload"] == {"dependencyName": "orders-v1", "dataKey": "@this",
                                  "useRawData": True}  # fmt: skip
    assert set(by_dest) == {"event", "payload", "pipeline", "trigger", "reason"}


def test_data_filters_string_number_bool_and_isin() -> None:
    payload = rtflow.payload
    trigger = kafka(
        filter=(payload("body.action") == "purchase")
        & (payload("body.amount") >= 10)
        & (payload("body.vip") == True)  # noqa: E712
        & payload("body.id").isin(["a.1", "b(2)"])
    )
    (sensor,) = by_kind(compile_docs(make(trigger)))["Sensor"]
    filters = sensor["spec"]["dependencies"][0]["filters"]
    assert filters["dataLogicalOperator"] == "and"
    assert filters["data"] == [
        {"path": "body.action", "type": "string", "comparator": "=", "value": ["^purchase$"]},
        {"path": "body.amount", "type": "number", "comparator": ">=", "value": ["10"]},
        {"path": "body.vip", "type": "bool", "comparator": "=", "value": ["true"]},
        {
            "path": "body.id",
            "type": "string",
            "comparator": "=",
            "value": ["^a\\.1$", "^b\\(2\\)$"],
        },
    ]


def test_expression_filter_for_or_and_not() -> None:
    payload = rtflow.payload
    trigger = kafka(filter=(payload("body.action") == "refund") | ~(payload("body.amount") < 100))
    (sensor,) = by_kind(compile_docs(make(trigger)))["Sensor"]
    filters = sensor["spec"]["dependencies"][0]["filters"]
    assert "data" not in filters
    assert filters["exprs"] == [
        {
            "expr": '(f0 == "refund") || (!(f1 < 100))',
            "fields": [
                {"name": "f0", "path": "body.action"},
                {"name": "f1", "path": "body.amount"},
            ],
        }
    ]


def test_webhook_and_calendar_sources() -> None:
    hook = rtflow.webhook(
        "/orders",
        port=13000,
        method="put",
        auth_secret=rtflow.SecretKey("hook-token", "token"),
        max_payload_size=65536,
        inputs={"order": "body", "urgent": rtflow.constant(True)},
    )
    tick = rtflow.calendar(
        interval="15m", timezone="America/New_York", inputs={"order": rtflow.constant({})}
    )
    kinds = by_kind(compile_docs(make(hook, tick)))
    sources = {s["metadata"]["name"]: s["spec"] for s in kinds["EventSource"]}
    webhook = sources["orders-webhook"]
    assert webhook["service"] == {"ports": [{"port": 13000, "targetPort": 13000}]}
    assert webhook["webhook"]["webhook"] == {
        "endpoint": "/orders",
        "method": "PUT",
        "port": "13000",
        "url": "",
        "authSecret": {"name": "hook-token", "key": "token"},
        "maxPayloadSize": 65536,
    }
    assert sources["orders-calendar"]["calendar"] == {
        "calendar": {"interval": "15m", "timezone": "America/New_York"}
    }
    (sensor,) = kinds["Sensor"]
    assert [t["template"]["conditions"] for t in sensor["spec"]["triggers"]] == [
        "webhook",
        "calendar",
    ]
    calendar_params = sensor["spec"]["triggers"][1]["template"]["k8s"]["parameters"]
    assert calendar_params == [
        {
            "src": {"dependencyName": "calendar", "value": "{}"},
            "dest": "spec.arguments.parameters.0.value",
        }
    ]


def test_cron_schedule() -> None:
    tick = rtflow.calendar("*/15 9-17 * jan-mar mon-fri", inputs={"order": rtflow.constant({})})
    (source,) = by_kind(compile_docs(make(tick)))["EventSource"]
    assert source["spec"]["calendar"]["calendar"]["schedule"] == "*/15 9-17 * jan-mar mon-fri"


def test_event_bus_existing_or_emitted() -> None:
    existing = by_kind(compile_docs(make(kafka(), event_bus="payments")))
    assert "EventBus" not in existing
    assert existing["Sensor"][0]["spec"]["eventBusName"] == "payments"
    assert existing["EventSource"][0]["spec"]["eventBusName"] == "payments"
    emitted = by_kind(compile_docs(make(kafka(), event_bus=rtflow.EventBus("rt-bus", replicas=5))))
    (bus,) = emitted["EventBus"]
    assert bus["metadata"]["name"] == "rt-bus"
    assert bus["spec"]["jetstream"]["replicas"] == 5
    assert bus["spec"]["jetstream"]["persistence"]["volumeSize"] == "10Gi"
    assert emitted["Sensor"][0]["spec"]["eventBusName"] == "rt-bus"


def test_rbac_grants_only_what_each_identity_uses() -> None:
    kinds = by_kind(compile_docs(make(kafka())))
    roles = {r["metadata"]["name"]: r["rules"] for r in kinds["Role"]}
    assert roles == {
        "orders-sensor": [
            {"apiGroups": ["argoproj.io"], "resources": ["workflows"], "verbs": ["create"]}
        ],
        "orders-workflow": [
            {
                "apiGroups": ["argoproj.io"],
                "resources": ["workflowtaskresults"],
                "verbs": ["create", "patch"],
            }
        ],
    }
    bindings = {b["metadata"]["name"]: b for b in kinds["RoleBinding"]}
    assert bindings["orders-sensor"]["subjects"] == [
        {"kind": "ServiceAccount", "name": "orders-sensor"}
    ]
    (template,) = kinds["WorkflowTemplate"]
    assert template["spec"]["serviceAccountName"] == "orders-workflow"
    own = by_kind(compile_docs(make(kafka(), service_account="team-runner")))
    assert {r["metadata"]["name"] for r in own["Role"]} == {"orders-sensor"}
    assert own["WorkflowTemplate"][0]["spec"]["serviceAccountName"] == "team-runner"


def test_namespaced_pipeline_puts_the_namespace_everywhere() -> None:
    docs = compile_docs(make(kafka(), namespace="payments"))
    assert {d["metadata"].get("namespace") for d in docs} == {"payments"}
    binding = next(d for d in docs if d["kind"] == "RoleBinding")
    assert binding["subjects"][0]["namespace"] == "payments"


def _all_documents() -> list[dict[str, Any]]:
    pipelines = [
        p.build()
        for e in sorted((ROOT / "examples").glob("*.py"))
        for p in load_pipelines(str(e))[1]
    ]
    hook = rtflow.webhook("/orders", auth_secret=None, inputs={"order": "body"})
    tick = rtflow.calendar("@daily", inputs={"order": rtflow.constant({})})
    pipelines.append(
        make(
            kafka(delivery=rtflow.Delivery(dead_letter=rtflow.DeadLetter("dlq"))),
            hook,
            tick,
            namespace="x",
        ).build()
    )
    import yaml

    from rtflow.generators.writers import render_stream

    return list(yaml.safe_load_all(render_stream(compile_pipelines(pipelines))))


def test_every_events_object_is_strictly_valid() -> None:
    docs = _all_documents()
    events = [d for d in docs if d["kind"] in ("EventSource", "Sensor", "EventBus")]
    assert {d["kind"] for d in events} == {"EventSource", "Sensor", "EventBus"}
    for doc in events:
        assert strict_schema.errors(doc, strict_schema.EVENTS) == [], doc["metadata"]["name"]


def test_every_core_object_passes_kubernetes_validate_strict() -> None:
    core = [
        d for d in _all_documents() if d["apiVersion"] in ("v1", "rbac.authorization.k8s.io/v1")
    ]
    assert {"ServiceAccount", "Role", "RoleBinding"} <= {d["kind"] for d in core}
    for doc in core:
        kubernetes_validate.validate(doc, "1.29", strict=True)
    broken = copy.deepcopy(core[0])
    broken["metadata"]["nmae"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.29", strict=True)


def test_stream_is_in_apply_order() -> None:
    kinds = [d["kind"] for d in compile_docs(make(kafka(), event_bus=rtflow.EventBus("bus")))]
    order = [
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "NetworkPolicy",
        "EventBus",
        "WorkflowTemplate",
        "EventSource",
        "Sensor",
    ]
    assert kinds == sorted(kinds, key=order.index)


# Cross-resource checks


def _bundle() -> bundle_module.Bundle:
    return compile_pipelines([make(kafka()).build()])


def _mutated(change: Any) -> bundle_module.Bundle:
    original = _bundle()
    manifests = []
    for m in original.manifests:
        body = copy.deepcopy(m.body)
        change(body)
        manifests.append(bundle_module.Manifest(m.pipeline, body))
    return bundle_module.Bundle(tuple(manifests), original.files, original.sources)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: (
                d["kind"] == "Sensor"
                and d["spec"]["dependencies"][0].update(eventSourceName="gone")
            ),
            "names EventSource 'gone', which is not generated",
        ),
        (
            lambda d: (
                d["kind"] == "Sensor" and d["spec"]["dependencies"][0].update(eventName="other")
            ),
            "has no event 'other'",
        ),
        (
            lambda d: d["kind"] == "Sensor" and d["spec"].update(eventBusName="elsewhere"),
            "uses EventBus 'elsewhere'",
        ),
        (
            lambda d: (
                d["kind"] == "Sensor"
                and d["spec"]["triggers"][0]["template"]["k8s"]["parameters"][0].update(
                    dest="spec.arguments.parameters.7.value"
                )
            ),
            "is not one of the Workflow's arguments",
        ),
        (
            lambda d: (
                d["kind"] == "Sensor"
                and d["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]["spec"][
                    "arguments"
                ]["parameters"][0].update(name="amont")
            ),
            "passes 'amont', which WorkflowTemplate 'orders' does not declare",
        ),
        (
            lambda d: (
                d["kind"] == "Sensor"
                and d["spec"]["triggers"][0]["template"]["k8s"]["source"]["resource"]["spec"][
                    "workflowTemplateRef"
                ].update(name="nope")
            ),
            "starts WorkflowTemplate 'nope', which is not generated",
        ),
        (
            lambda d: d["kind"] == "RoleBinding" and d["roleRef"].update(name="ghost"),
            "Role 'ghost' is not generated",
        ),
    ],
)
def test_cross_resource_checks(change: Any, message: str) -> None:
    bundle_module.check(_bundle())  # the real output is consistent
    with pytest.raises(BundleError, match=message):
        bundle_module.check(_mutated(change))


# Bad input


def test_plaintext_credentials_are_refused() -> None:
    sasl = rtflow.Sasl(user="orders", password="hunter2")
    error = error_of(make(kafka(sasl=sasl)))
    assert error.field == "triggers.orders-v1.sasl.user"
    assert "plaintext credential" in error.problem and "rtflow.SecretKey" in error.fix
    hook = rtflow.webhook("/x", auth_secret="s3cret", inputs={"order": "body"})  # type: ignore[arg-type]
    assert error_of(make(hook)).field == "triggers.webhook.auth_secret"


def test_mapping_to_an_unknown_input() -> None:
    error = error_of(make(kafka(inputs={"order": "body", "amout": "body.amount"})))
    assert error.field == "triggers.orders-v1.inputs.amout"
    assert "order, amount, urgent" in error.fix


def test_a_required_input_left_unmapped() -> None:
    error = error_of(make(kafka(inputs={"amount": "body.amount"})))
    assert "'order' has no default" in error.problem


def test_a_mapping_of_the_wrong_type() -> None:
    error = error_of(make(kafka(inputs={"order": "body", "amount": "body.action"})))
    assert "is a str but input 'amount' is float" in error.problem


def test_a_filter_on_an_unknown_field() -> None:
    error = error_of(make(kafka(filter=rtflow.payload("body.actoin") == "buy")))
    assert error.field == "triggers.orders-v1.filter"
    assert "not in the declared payload schema" in error.problem and "action" in error.problem


def test_a_filter_value_of_the_wrong_type() -> None:
    error = error_of(make(kafka(filter=rtflow.payload("body.amount") == "ten")))
    assert "is a float but is compared with 'ten'" in error.problem


def test_a_path_the_event_cannot_have() -> None:
    error = error_of(make(kafka(inputs={"order": "payload"})))
    assert "a kafka event has no field 'payload'" in error.problem


@pytest.mark.parametrize(
    ("schedule", "problem"),
    [
        ("* * *", "3 fields"),
        ("61 * * * *", "outside 0-59"),
        ("0 0 * foo *", "'foo'"),
        ("5-1 * * * *", "backwards"),
    ],
)
def test_an_invalid_cron(schedule: str, problem: str) -> None:
    error = error_of(make(rtflow.calendar(schedule, inputs={"order": rtflow.constant({})})))
    assert error.field == "triggers.calendar.schedule"
    assert problem in error.problem


def test_an_invalid_timezone() -> None:
    tick = rtflow.calendar(
        "@hourly", timezone="europe/paris", inputs={"order": rtflow.constant({})}
    )
    error = error_of(make(tick))
    assert error.field == "triggers.calendar.timezone"
    assert "did you mean 'Europe/Paris'" in error.fix


@pytest.mark.parametrize("port", [0, 70000, -1])
def test_a_webhook_port_out_of_range(port: int) -> None:
    hook = rtflow.webhook("/x", port=port, auth_secret=None, inputs={"order": "body"})
    assert error_of(make(hook)).field == "triggers.webhook.port"


def test_a_webhook_without_auth_is_refused_unless_said_so() -> None:
    error = error_of(make(rtflow.webhook("/x", inputs={"order": "body"})))
    assert error.field == "triggers.webhook.auth_secret"
    assert "auth_secret=None" in error.fix
    open_hook = rtflow.webhook("/x", auth_secret=None, inputs={"order": "body"})
    (source,) = [d for d in compile_docs(make(open_hook)) if d["kind"] == "EventSource"]
    assert "authSecret" not in source["spec"]["webhook"]["webhook"]


def test_a_webhook_serves_https_with_its_certificate_from_secrets() -> None:
    hook = rtflow.webhook(
        "/x",
        auth_secret=rtflow.SecretKey("hook", "token"),
        tls=rtflow.WebhookTls(
            cert=rtflow.SecretKey("hook-tls", "tls.crt"),
            key=rtflow.SecretKey("hook-tls", "tls.key"),
        ),
        inputs={"order": "body"},
    )
    (source,) = [d for d in compile_docs(make(hook)) if d["kind"] == "EventSource"]
    webhook = source["spec"]["webhook"]["webhook"]
    assert webhook["serverCertSecret"] == {"name": "hook-tls", "key": "tls.crt"}
    assert webhook["serverKeySecret"] == {"name": "hook-tls", "key": "tls.key"}
    bad = rtflow.webhook("/x", auth_secret=None, tls="cert.pem", inputs={"order": "body"})  # type: ignore[arg-type]
    assert error_of(make(bad)).field == "triggers.webhook.tls"


@pytest.mark.parametrize("topic", ["orders events", "a/b", "", "..", "x" * 250])
def test_a_topic_kafka_would_reject(topic: str) -> None:
    trigger = rtflow.kafka(topic, brokers=BROKERS, inputs={"order": "body"}, name="t")
    error = error_of(make(trigger))
    assert error.field == "triggers.t.topic"
    assert "Kafka accepts" in error.problem


def test_a_bad_broker_and_a_filter_on_a_schedule() -> None:
    assert "host:port" in error_of(make(kafka(brokers=["kafka"]))).problem
    tick = rtflow.calendar("@daily", inputs={"order": rtflow.constant({})})
    object.__setattr__(tick, "filter", rtflow.payload("body.x") == 1)
    assert "no payload to filter" in error_of(make(tick)).problem


def test_duplicate_trigger_names() -> None:
    error = error_of(make(kafka(name="in"), kafka(name="in")))
    assert "two triggers are named 'in'" in error.problem


def test_sync_waves_follow_the_apply_order() -> None:
    docs = compile_docs(make(kafka(), event_bus=rtflow.EventBus("bus")))
    waves = {
        d["kind"]: int(d["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for d in docs
    }
    assert waves == {
        "ServiceAccount": 0,
        "Role": 0,
        "RoleBinding": 0,
        "NetworkPolicy": 0,
        "EventBus": 1,
        "WorkflowTemplate": 3,
        "EventSource": 4,
        "Sensor": 5,
    }
