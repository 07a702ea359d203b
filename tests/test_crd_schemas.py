"""The stream plane's custom resources against their upstream CRD schemas, strictly.

KEDA's ScaledObject and TriggerAuthentication, Strimzi's KafkaTopic and prometheus-operator's
PodMonitor, ServiceMonitor and PrometheusRule are checked against the ``openAPIV3Schema`` of the
served version of their CRDs at the releases pinned in tools/crd_schemas.py, which
tools/provision.sh writes into .tools/schemas (rtflow.verify.crd_schema). An object as an
operator writes it passes; a misspelt field at a nested level is a finding at its path, in
rtflow.verify.crd_schema, in tests/strict_schema.py and in ``rtflow lint``. Without the schemas
these tests skip with the reason, and fail under CI=true.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import strict_schema
import yaml
from compiled import ROOT
from components import component_missing

from rtflow.verify import crd_schema

SCALED_OBJECT: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "ScaledObject",
    "metadata": {
        "name": "fraud-scorer",
        "namespace": "rtflow",
        "labels": {"app.kubernetes.io/name": "fraud-scorer"},
    },
    "spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-scorer"},
        "pollingInterval": 15,
        "cooldownPeriod": 120,
        "minReplicaCount": 1,
        "maxReplicaCount": 12,
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleDown": {
                        "stabilizationWindowSeconds": 300,
                        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                    }
                }
            }
        },
        "triggers": [
            {
                "type": "kafka",
                "name": "payments-lag",
                "metadata": {
                    "bootstrapServers": "events-kafka-bootstrap.kafka:9093",
                    "consumerGroup": "fraud-scorer",
                    "topic": "payments",
                    "lagThreshold": "100",
                    "offsetResetPolicy": "latest",
                },
                "authenticationRef": {"name": "fraud-scorer-kafka"},
            }
        ],
    },
}
TRIGGER_AUTHENTICATION: dict[str, Any] = {
    "apiVersion": "keda.sh/v1alpha1",
    "kind": "TriggerAuthentication",
    "metadata": {"name": "fraud-scorer-kafka", "namespace": "rtflow"},
    "spec": {
        "secretTargetRef": [
            {"parameter": "sasl", "name": "fraud-scorer-kafka", "key": "mechanism"},
            {"parameter": "username", "name": "fraud-scorer-kafka", "key": "username"},
            {"parameter": "password", "name": "fraud-scorer-kafka", "key": "password"},
            {"parameter": "tls", "name": "fraud-scorer-kafka", "key": "tls"},
            {"parameter": "ca", "name": "events-cluster-ca-cert", "key": "ca.crt"},
        ]
    },
}
KAFKA_TOPIC: dict[str, Any] = {
    "apiVersion": "kafka.strimzi.io/v1",
    "kind": "KafkaTopic",
    "metadata": {
        "name": "payments",
        "namespace": "kafka",
        "labels": {"strimzi.io/cluster": "events"},
    },
    "spec": {
        "partitions": 12,
        "replicas": 3,
        "config": {
            "retention.ms": 604800000,
            "min.insync.replicas": 2,
            "cleanup.policy": "delete",
            "compression.type": "zstd",
        },
    },
}
POD_MONITOR: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PodMonitor",
    "metadata": {"name": "fraud-scorer", "namespace": "rtflow", "labels": {"release": "kps"}},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "fraud-scorer"}},
        "namespaceSelector": {"matchNames": ["rtflow"]},
        "podMetricsEndpoints": [
            {
                "port": "metrics",
                "path": "/metrics",
                "interval": "15s",
                "scrapeTimeout": "10s",
                "relabelings": [
                    {
                        "sourceLabels": ["__meta_kubernetes_pod_node_name"],
                        "targetLabel": "node",
                        "action": "replace",
                    }
                ],
            }
        ],
    },
}
SERVICE_MONITOR: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "ServiceMonitor",
    "metadata": {"name": "fraud-triton", "namespace": "rtflow", "labels": {"release": "kps"}},
    "spec": {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "fraud-triton"}},
        "endpoints": [
            {"port": "metrics", "interval": "30s", "scrapeTimeout": "10s"},
            {"targetPort": 8002, "path": "/metrics"},  # int-or-string: a number here
        ],
    },
}
PROMETHEUS_RULE: dict[str, Any] = {
    "apiVersion": "monitoring.coreos.com/v1",
    "kind": "PrometheusRule",
    "metadata": {"name": "fraud-scorer", "namespace": "rtflow", "labels": {"release": "kps"}},
    "spec": {
        "groups": [
            {
                "name": "rtflow.fraud-scorer",
                "interval": "30s",
                "rules": [
                    {
                        "alert": "FraudScorerLagHigh",
                        "expr": 'sum(kafka_consumergroup_lag{consumergroup="fraud-scorer"}) > 1000',
                        "for": "5m",
                        "labels": {"severity": "warning", "team": "payments"},
                        "annotations": {
                            "summary": "fraud-scorer is falling behind on payments",
                            "description": "Consumer lag is {{ $value }} messages.",
                        },
                    },
                    {
                        "record": "rtflow:fraud_scored:rate5m",
                        "expr": "sum(rate(rtflow_records_total[5m]))",
                    },
                ],
            }
        ]
    },
}
VALID = {
    "ScaledObject": SCALED_OBJECT,
    "TriggerAuthentication": TRIGGER_AUTHENTICATION,
    "KafkaTopic": KAFKA_TOPIC,
    "PodMonitor": POD_MONITOR,
    "ServiceMonitor": SERVICE_MONITOR,
    "PrometheusRule": PROMETHEUS_RULE,
}


def misspell(document: dict[str, Any], path: list[Any], right: str, wrong: str) -> dict[str, Any]:
    """A copy of ``document`` with the key ``right`` under ``path`` renamed to ``wrong``."""
    broken = copy.deepcopy(document)
    node = broken
    for part in path:
        node = node[part]
    node[wrong] = node.pop(right)
    return broken


# kind -> (document with a misspelt field at a nested level, the field's path, and the other
# findings: a misspelt required field is also missing)
MISSPELT: dict[str, tuple[dict[str, Any], str, list[str]]] = {
    "ScaledObject": (
        misspell(SCALED_OBJECT, ["spec", "triggers", 0, "authenticationRef"], "name", "nmae"),
        "spec.triggers[0].authenticationRef.nmae",
        ["spec.triggers[0].authenticationRef.name: required field is missing"],
    ),
    "TriggerAuthentication": (
        misspell(TRIGGER_AUTHENTICATION, ["spec", "secretTargetRef", 2], "parameter", "paramter"),
        "spec.secretTargetRef[2].paramter",
        ["spec.secretTargetRef[2].parameter: required field is missing"],
    ),
    "KafkaTopic": (
        misspell(KAFKA_TOPIC, ["spec"], "replicas", "replica"),
        "spec.replica",
        [],
    ),
    "PodMonitor": (
        misspell(
            POD_MONITOR,
            ["spec", "podMetricsEndpoints", 0, "relabelings", 0],
            "targetLabel",
            "targetlabel",
        ),
        "spec.podMetricsEndpoints[0].relabelings[0].targetlabel",
        [],
    ),
    "ServiceMonitor": (
        misspell(SERVICE_MONITOR, ["spec", "endpoints", 0], "scrapeTimeout", "scrapeTimout"),
        "spec.endpoints[0].scrapeTimout",
        [],
    ),
    "PrometheusRule": (
        misspell(PROMETHEUS_RULE, ["spec", "groups", 0, "rules", 0], "annotations", "annotation"),
        "spec.groups[0].rules[0].annotation",
        [],
    ),
}
NEW_KINDS = sorted(VALID)


def rtflow(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )


def require(*kinds: str) -> None:
    """Skip (fail under CI=true) unless the schemas of ``kinds`` are provisioned."""
    for kind in kinds:
        try:
            crd_schema.schema_path(crd_schema.entry_for(kind))
        except crd_schema.CRDSchemaUnavailable as exc:
            component_missing(str(exc))


def load_tool() -> Any:
    spec = importlib.util.spec_from_file_location("crd_schemas", ROOT / "tools/crd_schemas.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_checked_kinds_are_those_the_tool_writes() -> None:
    tool = load_tool()
    written = {
        (source.group, kind, f"{source.name}-{source.version}", tool.schema_file(kind))
        for source in tool.SOURCES
        for kind in source.crds
    }
    checked = {(k.group, k.kind, k.release.folder, k.file) for k in crd_schema.KINDS.values()}
    assert checked == written
    assert {kind for _, kind, _, _ in checked} >= set(NEW_KINDS)


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_the_served_version_is_the_one_checked(kind: str) -> None:
    require(kind)
    entry = crd_schema.entry_for(kind)
    path = crd_schema.schema_path(entry)
    provenance = json.loads((path.parent / "provenance.json").read_text())
    assert provenance["kinds"][kind]["apiVersion"] == entry.api_version
    assert provenance["kinds"][kind]["file"] == path.name


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_an_operators_object_is_valid(kind: str) -> None:
    require(kind)
    assert crd_schema.is_known(VALID[kind])
    assert crd_schema.errors(VALID[kind]) == []
    assert strict_schema.errors_any(copy.deepcopy(VALID[kind])) == []


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_a_misspelt_nested_field_is_found_at_its_path(kind: str) -> None:
    require(kind)
    broken, path, also = MISSPELT[kind]
    expected = sorted([f"{path}: unknown field", *also])
    assert crd_schema.errors(broken) == expected
    assert sorted(strict_schema.errors_any(broken)) == expected


def test_what_the_schema_leaves_open_stays_open_and_the_rest_is_typed() -> None:
    require("KafkaTopic", "ServiceMonitor", "PrometheusRule", "ScaledObject")
    # x-kubernetes-preserve-unknown-fields: a topic's config takes any Kafka topic setting.
    topic = copy.deepcopy(KAFKA_TOPIC)
    topic["spec"]["config"]["some.future.setting"] = {"nested": [1, 2]}
    assert crd_schema.errors(topic) == []
    topic["spec"]["partitions"] = 0
    assert crd_schema.errors(topic) == ["spec.partitions: 0 is less than the minimum of 1"]
    # x-kubernetes-int-or-string: a port name or number, nothing else.
    monitor = copy.deepcopy(SERVICE_MONITOR)
    monitor["spec"]["endpoints"][1]["targetPort"] = "metrics"
    assert crd_schema.errors(monitor) == []
    monitor["spec"]["endpoints"][1]["targetPort"] = 80.5
    (problem,) = crd_schema.errors(monitor)
    assert problem.startswith("spec.endpoints[1].targetPort: 80.5 is not valid")
    # A map of strings: a KEDA trigger's metadata values are strings.
    scaled = copy.deepcopy(SCALED_OBJECT)
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 100
    assert crd_schema.errors(scaled) == [
        "spec.triggers[0].metadata.lagThreshold: 100 is not of type 'string'"
    ]
    rule = copy.deepcopy(PROMETHEUS_RULE)
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    (problem,) = crd_schema.errors(rule)
    assert problem.startswith("spec.groups[0].rules[0].for: 'five minutes' does not match")


def test_api_version_kind_and_metadata_are_checked() -> None:
    require("ScaledObject")
    wrong = copy.deepcopy(SCALED_OBJECT)
    wrong["apiVersion"] = "keda.sh/v1"
    del wrong["metadata"]["name"]
    wrong["metadata"]["lables"] = {}
    assert crd_schema.errors(wrong) == [
        "apiVersion: 'keda.sh/v1' is not 'keda.sh/v1alpha1'",
        "metadata.name: a KEDA ScaledObject needs a name",
        "metadata.lables: unknown field",
    ]


def test_lint_finds_a_misspelt_field_in_a_file(tmp_path: Path) -> None:
    require(*NEW_KINDS)
    clean = tmp_path / "clean" / "stream-plane.yaml"
    clean.parent.mkdir()
    clean.write_text(yaml.safe_dump_all([VALID[kind] for kind in NEW_KINDS]))
    result = rtflow("lint", str(clean.parent), "--output", "json", "--no-real-linters")
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    expected = []
    for kind in NEW_KINDS:
        document, path, also = MISSPELT[kind]
        file = broken / f"{kind.lower()}.yaml"
        file.write_text(yaml.safe_dump(document))
        name = f"{kind}/{document['metadata']['name']}"
        for line in [f"{path}: unknown field", *also]:
            field, message = line.split(": ", 1)
            expected.append(("structure", str(file), name, field, message))
    result = rtflow("lint", str(broken), "--output", "json", "--no-real-linters")
    assert result.returncode == 1, result.stderr
    findings = [
        (f["rule"], f["file"], f["object"], f["field"], f["message"])
        for f in json.loads(result.stdout)["findings"]
    ]
    assert sorted(findings) == sorted(expected)


def test_without_the_schemas_lint_says_what_it_skipped(tmp_path: Path) -> None:
    (tmp_path / "stream-plane.yaml").write_text(
        yaml.safe_dump_all([VALID[kind] for kind in NEW_KINDS])
    )
    result = rtflow(
        "lint",
        str(tmp_path),
        "--no-real-linters",
        env={"RTFLOW_CRD_SCHEMAS": str(tmp_path / "nowhere")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    skipped = sorted(line for line in result.stdout.splitlines() if "-schema: " in line)
    assert [line.split(":")[1].strip() for line in skipped[:3]] == [
        "keda-schema",
        "prometheus-operator-schema",
        "strimzi-schema",
    ]
    keda, prometheus, strimzi = skipped[:3]
    assert keda.startswith("skipped: keda-schema: 2 object(s) not checked against KEDA's schema")
    assert "ScaledObject/fraud-scorer, TriggerAuthentication/fraud-scorer-kafka" in keda
    assert "3 object(s)" in prometheus and "PrometheusRule/fraud-scorer" in prometheus
    assert "KafkaTopic/payments" in strimzi and "java 21+" in strimzi
    assert all("tools/provision.sh" in line and "RTFLOW_CRD_SCHEMAS" in line for line in skipped)


def test_a_missing_schema_says_how_to_provision_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RTFLOW_CRD_SCHEMAS", "/nowhere")
    with pytest.raises(crd_schema.CRDSchemaUnavailable) as caught:
        crd_schema.errors(KAFKA_TOPIC)
    message = str(caught.value)
    assert message.startswith("Strimzi's KafkaTopic schema (io.strimzi:crd-generator:1.2.0")
    assert "/nowhere/strimzi-1.2.0/kafkatopic.schema.json does not exist" in message
    assert "RTFLOW_CRD_SCHEMAS is set" in message and "`tools/provision.sh`" in message
