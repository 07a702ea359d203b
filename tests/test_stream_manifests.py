"""What ``rtflow compile`` emits for the stream plane: the workers' Deployment, its identity,
disruption budget and probes, KEDA scaling on lag, Strimzi topics, the NetworkPolicy, the
monitoring, and how an environment's overlay changes them. Checked against the runtime's own
layout (the topic and consumer group a worker really reads), not against copies of it."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compiled import ROOT

import rtflow
from rtflow.generators import overlays
from rtflow.generators import stream as stream_plane
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.stream import common
from rtflow.generators.stream.topics import object_name
from rtflow.generators.writers import render_stream
from rtflow.loader import load_pipelines
from rtflow.stages.stream.plan import Message, Plan
from rtflow.stream_layout import groups, stream_topics

EXAMPLE = ROOT / "examples" / "fraud_detection.py"
Document = dict[str, Any]


def _fraud() -> rtflow.ir.Pipeline:
    _, pipelines = load_pipelines(str(EXAMPLE))
    (fraud,) = [p.build() for p in pipelines if p.name == "fraud-detection"]
    return fraud


def _by_kind(documents: list[Document]) -> dict[str, list[Document]]:
    found: dict[str, list[Document]] = {}
    for document in documents:
        found.setdefault(document["kind"], []).append(document)
    return found


@pytest.fixture(scope="module")
def fraud() -> rtflow.ir.Pipeline:
    return _fraud()


@pytest.fixture(scope="module")
def compiled(fraud: rtflow.ir.Pipeline) -> dict[str, list[Document]]:
    bundle = compile_pipelines([fraud])
    return _by_kind(list(yaml.safe_load_all(render_stream(bundle))))


def _pod_labels(deployment: Document) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_the_fraud_example_compiles_to_both_planes(compiled: dict[str, list[Document]]) -> None:
    for kind in ("WorkflowTemplate", "Sensor", "EventSource"):
        assert kind in compiled, kind
    names = {d["metadata"]["name"] for d in compiled["Deployment"]}
    assert names == {"fraud-detection-stream", "fraud-triton"}
    for kind in ("ScaledObject", "TriggerAuthentication", "KafkaTopic", "NetworkPolicy",
                 "PodMonitor", "PrometheusRule", "PodDisruptionBudget"):  # fmt: skip
        assert kind in compiled, kind


def _worker(compiled: dict[str, list[Document]], name: str = "fraud-detection-stream") -> Document:
    (deployment,) = [d for d in compiled["Deployment"] if d["metadata"]["name"] == name]
    return deployment


def test_the_worker_runs_the_runtime_on_the_pipelines_own_definition(
    compiled: dict[str, list[Document]],
) -> None:
    (container,) = _worker(compiled)["spec"]["template"]["spec"]["containers"]
    assert [*container["command"], *container["args"]] == [
        "python", "-m", "rtflow.stages", "stream", "fraud_detection:fraud_detection",
        "--group", "0", "--triton", "fraud-triton=fraud-triton:8001", "--metrics-port", "9400",
    ]  # fmt: skip
    assert container["image"] == "ghcr.io/acme/fraud/fraud-stream:1.0.0"
    env = {e["name"]: e for e in container["env"]}
    assert (
        env["KAFKA_BROKERS"]["value"]
        == "kafka-0.kafka.svc:9092,kafka-1.kafka.svc:9092,kafka-2.kafka.svc:9092"
    )
    assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
    assert env["RTFLOW_WORKER_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_credentials_reach_the_worker_only_as_files_from_secrets(
    compiled: dict[str, list[Document]],
) -> None:
    pod = _worker(compiled)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    for entry in container["env"]:
        assert "secretKeyRef" not in entry.get("valueFrom", {}), entry["name"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    variables = ("KAFKA_SASL_USERNAME_FILE", "KAFKA_SASL_PASSWORD_FILE", "KAFKA_SSL_CA_LOCATION")
    files = {env[name] for name in variables}
    (volume,) = [v for v in pod["volumes"] if "projected" in v]
    projected = {
        f"{common.SECRETS_DIR}/{item['path']}": (source["secret"]["name"], item["key"])
        for source in volume["projected"]["sources"]
        for item in source["secret"]["items"]
    }
    assert files == set(projected)
    assert projected[env["KAFKA_SASL_PASSWORD_FILE"]] == ("kafka-credentials", "password")
    assert projected[env["KAFKA_SSL_CA_LOCATION"]] == ("kafka-ca", "ca.crt")
    assert volume["projected"]["defaultMode"] == 0o440
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": common.SECRETS_DIR, "readOnly": True}


def test_the_worker_pod_is_locked_down_and_probed(compiled: dict[str, list[Document]]) -> None:
    deployment = _worker(compiled)
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert set(container["resources"]["limits"]) == {"cpu", "ephemeral-storage", "memory"}
    for probe in ("startupProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    # Liveness differs from readiness: the server accepts connections at all.
    assert container["livenessProbe"]["tcpSocket"] == {"port": "metrics"}
    assert {"name": "metrics", "containerPort": 9400, "protocol": "TCP"} in container["ports"]
    # SIGTERM: the longest batch wait, a batch and a commit fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] >= 12
    (account,) = [
        a for a in compiled["ServiceAccount"] if a["metadata"]["name"] == pod["serviceAccountName"]
    ]
    assert account["automountServiceAccountToken"] is False
    bound = {s["name"] for b in compiled.get("RoleBinding", []) for s in b["subjects"]}
    assert pod["serviceAccountName"] not in bound  # no Role: the workers call no API
    (budget,) = [
        b for b in compiled["PodDisruptionBudget"]
        if b["metadata"]["name"] == deployment["metadata"]["name"]
    ]  # fmt: skip
    assert budget["spec"]["maxUnavailable"] == 1
    assert _selects(budget["spec"]["selector"]["matchLabels"], _pod_labels(deployment))


def test_keda_scales_on_the_lag_of_the_group_the_worker_really_joins(
    fraud: rtflow.ir.Pipeline, compiled: dict[str, list[Document]]
) -> None:
    (scaled,) = compiled["ScaledObject"][:1]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "fraud-detection-stream"
    plan = Plan(fraud, group=0)
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == plan.consumer_group
    assert trigger["metadata"]["topic"] == plan.input_topic
    assert scaled["spec"]["maxReplicaCount"] == fraud.stream.partitions  # type: ignore[union-attr]
    # The lag one worker clears within the 35 ms budget at its measured rate.
    assert trigger["metadata"]["lagThreshold"] == "700"
    (auth,) = compiled["TriggerAuthentication"]
    assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "username": ("kafka-credentials", "username"),
        "password": ("kafka-credentials", "password"),
        "ca": ("kafka-ca", "ca.crt"),
    }
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["tls"] == "enable"


def test_every_topic_the_plane_uses_is_declared(
    fraud: rtflow.ir.Pipeline, compiled: dict[str, list[Document]]
) -> None:
    topics = {t["spec"]["topicName"]: t for t in compiled["KafkaTopic"]}
    assert set(topics) == set(stream_topics(fraud))
    assert {"transactions", "fraud-decisions", "fraud-detection-handoff",
            "transactions-dead-letter"} <= set(topics)  # fmt: skip
    dead = topics["transactions-dead-letter"]["spec"]["config"]["retention.ms"]
    assert dead > topics["transactions"]["spec"]["config"]["retention.ms"]
    for topic in topics.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "kafka"
        assert topic["spec"]["partitions"] == 4
        assert topic["spec"]["config"]["min.insync.replicas"] == 2


def test_topic_object_names_are_dns_names_for_any_kafka_name() -> None:
    assert object_name("fraud-decisions") == "fraud-decisions"
    odd = object_name("Payments.v2_events")
    assert odd.startswith("payments-v2-events-") and len(odd) <= 63
    assert object_name("Payments.v2_events") != object_name("payments.v2-events")


def test_the_network_policy_lets_workers_reach_only_kafka_triton_and_dns(
    compiled: dict[str, list[Document]],
) -> None:
    (policy,) = [p for p in compiled["NetworkPolicy"] if p["metadata"]["name"].endswith("-stream")]
    spec = policy["spec"]
    assert _selects(spec["podSelector"]["matchLabels"], _pod_labels(_worker(compiled)))
    (triton,) = [d for d in compiled["Deployment"] if d["metadata"]["name"] == "fraud-triton"]
    assert not _selects(spec["podSelector"]["matchLabels"], _pod_labels(triton))
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress = spec["egress"]
    assert len(egress) == 3
    dns, kafka, model = egress
    assert {p["port"] for p in dns["ports"]} == {53}
    assert kafka["to"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kafka"}}}
    ]
    assert kafka["ports"] == [{"port": 9092, "protocol": "TCP"}]
    assert _selects(model["to"][0]["podSelector"]["matchLabels"], _pod_labels(triton))
    assert model["ports"] == [{"port": 8001, "protocol": "TCP"}]


def test_monitoring_selects_the_workers_and_alerts_on_the_budget(
    compiled: dict[str, list[Document]],
) -> None:
    monitors = {m["metadata"]["name"]: m for m in compiled["PodMonitor"]}
    worker = monitors["fraud-detection-stream"]["spec"]
    assert _selects(worker["selector"]["matchLabels"], _pod_labels(_worker(compiled)))
    (triton,) = [d for d in compiled["Deployment"] if d["metadata"]["name"] == "fraud-triton"]
    assert _selects(
        monitors["fraud-triton"]["spec"]["selector"]["matchLabels"], _pod_labels(triton)
    )
    (rule,) = compiled["PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    latency = alerts["FraudDetectionStreamLatencyOverBudget"]["expr"]
    assert "rtflow_stream_event_latency_seconds_bucket" in latency
    assert latency.endswith("> 0.035")
    lag = alerts["FraudDetectionStreamLagGrowing"]["expr"]
    assert "rtflow_stream_consumer_lag" in lag and "deriv(" in lag
    assert 'rtflow_dev_pipeline="fraud-detection"' in lag
    stuck = alerts["FraudDetectionStreamOffsetsUnreadable"]
    assert stuck["expr"].startswith("max(rtflow_stream_unreadable_offset_partitions{")
    assert stuck["labels"]["severity"] == "critical"


def test_an_environment_moves_brokers_and_namespace_into_every_stream_object(
    fraud: rtflow.ir.Pipeline,
) -> None:
    documents = [dict(m.body) for m in compile_pipelines([fraud]).manifests]
    (kind,) = [e for e in fraud.environments if e.name == "kind"]
    built = _by_kind(overlays.apply(overlays.plan(fraud, kind, documents), documents))
    (container,) = _worker(built)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["KAFKA_BROKERS"] == "kafka.kafka.svc.cluster.local:9093"
    (scaled,) = built["ScaledObject"]
    assert scaled["spec"]["triggers"][0]["metadata"]["bootstrapServers"] == env["KAFKA_BROKERS"]
    (policy,) = [p for p in built["NetworkPolicy"] if p["metadata"]["name"].endswith("-stream")]
    assert policy["spec"]["egress"][1]["ports"] == [{"port": 9093, "protocol": "TCP"}]
    (rule,) = built["PrometheusRule"]
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert all('namespace="fraud"' in e for e in exprs)
    for documents_of_kind in built.values():
        for document in documents_of_kind:
            assert document["metadata"]["namespace"] == "fraud"


@rtflow.stage(image="ghcr.io/acme/shop:1")
def first(order: dict[str, Any]) -> float:
    return float(order["total"])


@rtflow.stage(image="ghcr.io/acme/shop:1")
def second(total: float) -> str:
    return "big" if total > 10 else "small"


def _pipeline(stream: rtflow.Stream) -> Any:
    orders = rtflow.kafka(
        "orders", brokers=["broker.example.com:9094"], consumer_group="shop",
        inputs={"order": "body"},
    )  # fmt: skip

    @rtflow.pipeline(name="shop", triggers=[orders], latency_budget_ms=80, stream=stream)
    def shop(order: dict[str, Any]) -> None:
        second(first(order))

    return shop


def test_a_hop_makes_a_deployment_and_a_scaler_per_group_on_the_runtimes_topics() -> None:
    pipeline = _pipeline(rtflow.Stream(hops=["second"], topics=None)).build()
    found = _by_kind(stream_plane.documents(pipeline))
    assert "KafkaTopic" not in found  # topics=None: managed otherwise
    deployments = {d["metadata"]["name"]: d for d in found["Deployment"]}
    assert set(deployments) == {"shop-stream", "shop-stream-1"}
    for group in groups(pipeline):
        plan = Plan(pipeline, group=group.index)
        name = common.worker_name(pipeline, group)
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert container["args"][container["args"].index("--group") + 1] == str(group.index)
        (scaled,) = [s for s in found["ScaledObject"] if s["metadata"]["name"] == name]
        metadata = scaled["spec"]["triggers"][0]["metadata"]
        assert (metadata["topic"], metadata["consumerGroup"]) == (
            plan.input_topic,
            plan.consumer_group,
        )
        assert "authenticationRef" not in scaled["spec"]["triggers"][0]
        assert metadata["lagThreshold"] == "1600"  # 20,000 events/s x 80 ms
    assert "TriggerAuthentication" not in found
    # Brokers outside the cluster: allowed by port only.
    (policy,) = found["NetworkPolicy"]
    assert {"ports": [{"port": 9094, "protocol": "TCP"}]} in policy["spec"]["egress"]


def _compile_error(tmp_path: Path, source: str) -> str:
    module = tmp_path / "bad_stream.py"
    module.write_text(source, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "compile", str(module), "-o", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


BAD = """
from typing import Any
import rtflow

@rtflow.stage(image="{first}")
def first(order: dict[str, Any]) -> float:
    return 1.0

@rtflow.stage(image="{second}")
def second(total: float) -> str:
    return "x"

orders = rtflow.kafka(
    "orders", brokers=["k:9092"], consumer_group="shop", inputs={{"order": "body"}}
)

@rtflow.pipeline(name="shop", triggers=[orders], stream=rtflow.Stream({options}))
def shop(order: dict[str, Any]) -> None:
    second(first(order))
"""


def test_a_hot_path_of_several_images_asks_for_the_workers_image(tmp_path: Path) -> None:
    line = _compile_error(tmp_path, BAD.format(first="a:1", second="b:1", options=""))
    assert "shop" in line and "stream.image" in line and "rtflow.Stream(image=" in line


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ("workers=5, partitions=4", "stream.workers"),
        ("topics=rtflow.KafkaTopics(replicas=1, min_insync_replicas=2)",
         "stream.topics.min_insync_replicas"),
        ("cpu='lots'", "stream.cpu"),
        ("memory='1Gi', memory_limit='512Mi'", "stream.memory_limit"),
        ("topics='strimzi'", "stream.topics"),
    ],
)  # fmt: skip
def test_bad_stream_deployment_options_fail_with_one_line(
    tmp_path: Path, options: str, field: str
) -> None:
    line = _compile_error(tmp_path, BAD.format(first="a:1", second="a:1", options=options))
    assert field in line, line


def test_stream_objects_are_deterministic(fraud: rtflow.ir.Pipeline) -> None:
    first = yaml.safe_dump_all(stream_plane.documents(fraud))
    again = yaml.safe_dump_all(stream_plane.documents(_fraud()))
    assert first == again
    moved = dataclasses.replace(fraud, namespace="elsewhere")
    assert yaml.safe_dump_all(stream_plane.documents(moved)) != first


# -- one definition, both planes -------------------------------------------------------------


def test_the_workflow_plane_runs_only_what_the_hot_path_hands_off(
    fraud: rtflow.ir.Pipeline, compiled: dict[str, list[Document]]
) -> None:
    stream = fraud.stream
    assert stream is not None
    (template,) = compiled["WorkflowTemplate"]
    (main,) = [t for t in template["spec"]["templates"] if t["name"] == "main"]
    assert {t["name"] for t in main["dag"]["tasks"]} == set(stream.handoff_tasks)
    (source,) = compiled["EventSource"]
    (event,) = source["spec"]["kafka"].values()
    assert event["topic"] == stream.handoff_topic == Plan(fraud).stream.handoff_topic
    assert event["consumerGroup"]["groupName"] == f"{stream.consumer_group}-handoff"
    # The hot outputs the review reads arrive as workflow parameters, not task outputs.
    text = yaml.safe_dump(template)
    for hot in stream.hot_tasks:
        assert f"tasks.{hot}." not in text
    assert "{{workflow.parameters.decide-risk}}" in text


def _dig(document: Any, path: str) -> Any:
    for key in path.split("."):
        document = document[key]
    return document


def test_a_hand_off_record_carries_every_parameter_the_sensor_maps() -> None:
    pipeline = _reviewed().build()
    plan = Plan(pipeline)
    message = Message("orders", 0, 41, b'{"total": 500.0, "id": 7}', b"k", [], 0)
    result = plan.execute([message])
    (record,) = [r for r in result.records if r.topic == "shop-handoff"]
    event = {"body": json.loads(record.value)}
    documents = _by_kind(list(yaml.safe_load_all(render_stream(compile_pipelines([pipeline])))))
    (sensor,) = documents["Sensor"]
    (trigger,) = sensor["spec"]["triggers"]
    resource = trigger["template"]["k8s"]["source"]["resource"]
    names = [p["name"] for p in resource["spec"]["arguments"]["parameters"]]
    values = {}
    for parameter in trigger["template"]["k8s"]["parameters"]:
        index = int(parameter["dest"].rsplit(".", 2)[-2])
        values[names[index]] = _dig(event, parameter["src"]["dataKey"])
    assert set(values) == {"order", "first-result"}
    assert values["first-result"] == "500.0"  # the hot output, as Argo text
    assert json.loads(values["order"]) == {"total": 500.0, "id": 7}
    (template,) = documents["WorkflowTemplate"]
    declared = {p["name"] for p in template["spec"]["arguments"]["parameters"]}
    assert set(values) == declared


@rtflow.stage(image="ghcr.io/acme/shop:1")
def audit(total: float) -> str:
    return f"audit {total}"


def _reviewed() -> Any:
    orders = rtflow.kafka(
        "orders", brokers=["kafka-0.kafka.svc:9092"], consumer_group="shop",
        inputs={"order": "body"},
    )  # fmt: skip
    check = rtflow.container("check", image="ghcr.io/acme/check:1", inputs={"total": float})

    @rtflow.pipeline(name="shop", triggers=[orders], stream=rtflow.Stream())
    def shop(order: dict[str, Any]) -> None:
        total = first(order)
        with rtflow.when(total > 100):
            check(total=total)

    return shop


def test_a_pipeline_that_is_all_hot_path_has_no_workflow_plane() -> None:
    documents = _by_kind(stream_plane.documents(_pipeline(rtflow.Stream()).build()))
    compiled = _by_kind(
        list(
            yaml.safe_load_all(
                render_stream(compile_pipelines([_pipeline(rtflow.Stream()).build()]))
            )
        )
    )
    assert "Deployment" in documents
    for kind in ("WorkflowTemplate", "Sensor", "EventSource"):
        assert kind not in compiled


def test_a_hand_off_topic_no_kafkatopic_declares_is_a_compile_error(
    fraud: rtflow.ir.Pipeline,
) -> None:
    from rtflow.errors import BundleError
    from rtflow.generators import bundle as bundle_module

    bundle = compile_pipelines([fraud])
    (source,) = [m for m in bundle.manifests if m.kind == "EventSource"]
    (event,) = source.body["spec"]["kafka"].values()
    event["topic"] = "fraud-detection-handof"
    with pytest.raises(BundleError, match=r"fraud-detection-handof'.*no KafkaTopic declares"):
        bundle_module.check(bundle)
    event["topic"] = "fraud-detection-handoff"
    event["sasl"]["userSecret"]["name"] = "other-credentials"
    with pytest.raises(BundleError, match="logs in with Secrets"):
        bundle_module.check(bundle)


def test_another_trigger_beside_the_stream_is_refused(tmp_path: Path) -> None:
    source = BAD.format(first="a:1", second="a:1", options="").replace(
        "triggers=[orders]",
        "triggers=[orders, rtflow.webhook('/orders', port=12000, auth_secret=None, "
        "inputs={'order': 'body'})]",
    )
    line = _compile_error(tmp_path, source)
    assert "triggers" in line and "stream" in line


def _shop_with(environment: rtflow.Environment) -> Any:
    orders = rtflow.kafka(
        "orders", brokers=["kafka-0.kafka.svc:9092"], consumer_group="shop",
        inputs={"order": "body"},
    )  # fmt: skip
    stream = rtflow.Stream(image="ghcr.io/acme/shop-stream:1", partitions=6)

    @rtflow.pipeline(name="shop", triggers=[orders], stream=stream, environments=[environment])
    def shop(order: dict[str, Any]) -> None:
        second(first(order))

    return shop


def test_an_environment_sets_the_workers_floor_and_image_like_any_other() -> None:
    prod = rtflow.Environment(
        "prod", namespace="shop", replicas={"shop-stream": 3},
        images={"ghcr.io/acme/shop-stream": "2"},
        worker_resources={"shop-stream": {"cpu": "2", "memory": "3Gi"}},
    )  # fmt: skip
    pipeline = _shop_with(prod).build()
    documents = [dict(m.body) for m in compile_pipelines([pipeline]).manifests]
    (env,) = pipeline.environments
    built = _by_kind(overlays.apply(overlays.plan(pipeline, env, documents), documents))
    (scaled,) = built["ScaledObject"]
    assert (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]) == (3, 6)
    (container,) = _worker(built, "shop-stream")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "ghcr.io/acme/shop-stream:2"
    assert container["resources"] == {
        "limits": {"cpu": "2", "ephemeral-storage": "1Gi", "memory": "3Gi"},
        "requests": {"cpu": "2", "ephemeral-storage": "128Mi", "memory": "3Gi"},
    }


def test_an_environment_cannot_ask_for_more_workers_than_partitions() -> None:
    from rtflow.errors import DefinitionError

    with pytest.raises(DefinitionError, match="partitions") as caught:
        _shop_with(rtflow.Environment("prod", replicas={"shop-stream": 7})).build()
    assert caught.value.field is not None and "replicas" in caught.value.field
    with pytest.raises(DefinitionError, match="shop-stream"):
        _shop_with(rtflow.Environment("prod", replicas={"shop-strem": 2})).build()
    with pytest.raises(DefinitionError, match="shop-stream") as caught:
        _shop_with(rtflow.Environment("prod", worker_resources={"shop": {"cpu": "1"}})).build()
    assert caught.value.field is not None and "worker_resources" in caught.value.field
    with pytest.raises(DefinitionError, match="below the request"):
        bad = {"shop-stream": {"cpu": "2", "memory": "1Gi", "cpu_limit": "1"}}
        _shop_with(rtflow.Environment("prod", worker_resources=bad)).build()
