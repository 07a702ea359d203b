"""What the WorkflowTemplate says: DAG, branches, fan-out, approval, exit handler, defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from compiled import tasks, templates, workflow_template
from pipelines import kitchen_sink

import rtflow
from rtflow.stages import contract

IMAGE = "ghcr.io/acme/tools:1.0"


@rtflow.stage(image=IMAGE)
def double(n: int) -> int:
    return 2 * n


@rtflow.stage(image=IMAGE)
def show(n: int) -> None:
    print(n)


@pytest.fixture(scope="module")
def sink_doc() -> dict[str, Any]:
    return workflow_template(kitchen_sink.kitchen_sink)


def test_data_dependencies_become_depends(sink_doc: dict[str, Any]) -> None:
    dag = tasks(sink_doc)
    assert dag["merge"]["depends"] == "process && stats"
    assert dag["report"]["depends"] == "merge && release-gate && stats"
    assert "depends" not in dag["stats"]
    merge_args = {p["name"]: p["value"] for p in dag["merge"]["arguments"]["parameters"]}
    assert merge_args == {"parts": "{{tasks.process.outputs.parameters.result}}"}


def test_pipeline_inputs_are_workflow_arguments(sink_doc: dict[str, Any]) -> None:
    params = sink_doc["spec"]["arguments"]["parameters"]
    assert params == [
        {"name": "values"},
        {"name": "shards", "value": "3"},
        {"name": "mode", "value": "full"},
    ]
    stats_args = tasks(sink_doc)["stats"]["arguments"]["parameters"]
    assert stats_args == [{"name": "values", "value": "{{workflow.parameters.values}}"}]


def test_when_combines_nested_blocks_and_operators(sink_doc: dict[str, Any]) -> None:
    when = tasks(sink_doc)["report"]["when"]
    assert when == (
        "({{tasks.stats.outputs.parameters.mean}} > 0.5)"
        " && ({{tasks.stats.outputs.parameters.ok}} == true)"
        " && ('{{workflow.parameters.mode}}' == 'full')"
        " && (('{{tasks.release-gate.outputs.parameters.decision}}' == 'ship')"
        " || (!({{tasks.stats.outputs.parameters.ok}} == true)))"
    )


def test_fan_out_over_an_output_and_over_a_literal(sink_doc: dict[str, Any]) -> None:
    dag = tasks(sink_doc)
    assert dag["process"]["withParam"] == "{{tasks.shard-ids.outputs.parameters.result}}"
    args = {p["name"]: p["value"] for p in dag["process"]["arguments"]["parameters"]}
    assert args == {"shard": "{{item}}", "mean": "{{tasks.stats.outputs.parameters.mean}}"}
    assert dag["process-2"]["withParam"] == '["a","b"]'
    assert dag["process"]["template"] == dag["process-2"]["template"] == "process"


def test_approval_is_a_suspend_with_a_supplied_decision(sink_doc: dict[str, Any]) -> None:
    gate = templates(sink_doc)["release-gate"]
    assert gate["suspend"] == {}
    (decision,) = gate["inputs"]["parameters"]
    assert decision["enum"] == ["ship", "hold", "drop"]
    assert decision["default"] == "hold"
    # The input's default is also the output's producer default: the decision of a skipped
    # approval (Argo v4 refuses to substitute a skipped node's output without one) and of a
    # plain `argo resume`.
    assert gate["outputs"]["parameters"] == [
        {"name": "decision", "valueFrom": {"supplied": {}, "default": "hold"}}
    ]
    assert "container" not in gate


def test_exit_handler(sink_doc: dict[str, Any]) -> None:
    assert sink_doc["spec"]["onExit"] == "exit-handler"
    (cleanup,) = tasks(sink_doc, "exit-handler").values()
    args = {p["name"]: p["value"] for p in cleanup["arguments"]["parameters"]}
    assert args == {
        "status": "{{workflow.status}}",
        "run": "{{workflow.uid}}",
        "took": "{{workflow.duration}}",
    }


def test_function_stage_runs_the_stage_runtime(sink_doc: dict[str, Any]) -> None:
    stats = templates(sink_doc)["stats"]
    container = stats["container"]
    assert container["command"] == list(contract.COMMAND)
    assert container["args"] == [
        "run",
        f"{kitchen_sink.__name__}:stats",
        "--outputs-dir",
        contract.OUTPUTS_DIR,
        "--input",
        "values={{inputs.parameters.values}}",
        "--input",
        "label={{inputs.parameters.label}}",
    ]
    assert stats["inputs"]["parameters"] == [
        {"name": "values"},
        {"name": "label", "default": "batch"},
    ]
    outputs = {p["name"]: p["valueFrom"]["path"] for p in stats["outputs"]["parameters"]}
    assert outputs == {n: f"{contract.OUTPUTS_DIR}/{n}" for n in ("mean", "count", "ok")}


def test_container_stage_placeholders_and_outputs(sink_doc: dict[str, Any]) -> None:
    report = templates(sink_doc)["report"]
    assert report["container"]["command"] == ["/report"]
    assert report["container"]["args"] == [
        "--summary",
        "{{inputs.parameters.summary}}",
        "--literal",
        "{braces}",
    ]
    assert report["inputs"]["parameters"][1] == {
        "name": "channel",
        "default": "#ml",
        "description": "where",
    }
    outputs = {p["name"]: p["valueFrom"]["path"] for p in report["outputs"]["parameters"]}
    assert outputs == {"url": "/tmp/out/url", "bytes": f"{contract.OUTPUTS_DIR}/bytes"}
    assert report["activeDeadlineSeconds"] == 60


def test_retry_deadline_resources_env_and_metadata(sink_doc: dict[str, Any]) -> None:
    stats = templates(sink_doc)["stats"]
    assert stats["retryStrategy"] == {
        "backoff": {"duration": "500ms", "factor": 3, "maxDuration": "1m"},
        "expression": contract.RETRY_EXPRESSION,
        "limit": 5,
        "retryPolicy": "OnTransientError",
    }
    assert stats["activeDeadlineSeconds"] == 90
    assert stats["container"]["resources"] == {
        "limits": {"cpu": "4", "ephemeral-storage": "2Gi", "memory": "2Gi"},
        "requests": {"cpu": "2", "ephemeral-storage": "256Mi", "memory": "1Gi"},
    }
    assert stats["container"]["env"] == [
        # A credential is a file by default: the variable holds its path, not its value.
        {"name": "API_TOKEN_FILE", "value": "/var/run/secrets/rtflow/kitchen-api/token"},
        {"name": "LOG_LEVEL", "value": "debug"},
        {"name": "MODE", "value": "fast"},
    ]
    assert stats["metadata"]["labels"] == {"rtflow.dev/stage": "stats", "tier": "hot"}
    assert stats["metadata"]["annotations"] == {
        "kitchen.example.com/owner": "ml-platform",
        "workflows.argoproj.io/description": "Summary statistics of a batch.",
    }
    assert stats["serviceAccountName"] == "kitchen-stats"


def test_pipeline_default_retry_applies_where_a_stage_has_none(sink_doc: dict[str, Any]) -> None:
    merge = templates(sink_doc)["merge"]
    assert merge["retryStrategy"]["limit"] == 2
    assert merge["retryStrategy"]["retryPolicy"] == "OnFailure"
    assert "retryStrategy" not in templates(sink_doc)["report"] or (
        templates(sink_doc)["report"]["retryStrategy"].get("expression") is None
    )


def test_production_defaults(sink_doc: dict[str, Any]) -> None:
    spec = sink_doc["spec"]
    assert spec["podGC"] == {"strategy": "OnWorkflowSuccess"}
    assert spec["ttlStrategy"] == {
        "secondsAfterCompletion": 86400,
        "secondsAfterFailure": 7200,
        "secondsAfterSuccess": 1800,
    }
    assert spec["activeDeadlineSeconds"] == 1800
    assert spec["parallelism"] == 4
    assert spec["serviceAccountName"] == "kitchen-runner"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["volumes"] == [{"name": "scratch", "emptyDir": {}}]


def test_every_container_is_locked_down_and_limited(sink_doc: dict[str, Any]) -> None:
    containers = [t["container"] for t in sink_doc["spec"]["templates"] if "container" in t]
    assert len(containers) == 6
    for container in containers:
        security = container["securityContext"]
        assert security["runAsNonRoot"] is True
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["privileged"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert set(container["resources"]["limits"]) == {"cpu", "ephemeral-storage", "memory"}
        scratch = {"name": "scratch", "mountPath": "/tmp"}
        credentials = {"name": "credentials", "mountPath": contract.SECRETS_DIR, "readOnly": True}
        assert container["volumeMounts"] in ([scratch], [scratch, credentials])


def test_labels_and_annotations(sink_doc: dict[str, Any]) -> None:
    metadata = sink_doc["metadata"]
    assert metadata["namespace"] == "ml-pipelines"
    for labels in (
        metadata["labels"],
        sink_doc["spec"]["workflowMetadata"]["labels"],
        sink_doc["spec"]["podMetadata"]["labels"],
    ):
        assert labels["app.kubernetes.io/name"] == "kitchen-sink"
        assert labels["app.kubernetes.io/part-of"] == "kitchen-sink"
        assert labels["app.kubernetes.io/managed-by"] == "rtflow"
        assert labels["team"] == "ml-platform"
    assert metadata["annotations"] == {
        "argocd.argoproj.io/sync-wave": "3",
        "kitchen.example.com/ticket": "ML-42",
        "rtflow.dev/latency-budget-ms": "60000",
        "workflows.argoproj.io/description": "Exercise every SDK feature.",
    }


def test_default_resources_when_none_are_given() -> None:
    @rtflow.pipeline(name="defaults")
    def p(n: int) -> None:
        show(double(n))

    resources = templates(workflow_template(p))["double"]["container"]["resources"]
    assert resources == {
        "limits": {"cpu": "1", "ephemeral-storage": "2Gi", "memory": "256Mi"},
        "requests": {"cpu": "250m", "ephemeral-storage": "256Mi", "memory": "256Mi"},
    }


def test_a_stage_called_twice_is_one_template_and_two_tasks() -> None:
    @rtflow.pipeline(name="twice")
    def p(n: int) -> None:
        show(double(double(n)))

    doc = workflow_template(p)
    assert set(tasks(doc)) == {"double", "double-2", "show"}
    assert tasks(doc)["double-2"]["depends"] == "double"
    assert sorted(templates(doc)) == ["double", "main", "show"]


def test_after_adds_an_ordering_without_data() -> None:
    @rtflow.pipeline(name="ordered")
    def p(n: int) -> None:
        first = show(n)
        double(n).after(first)

    assert tasks(workflow_template(p))["double"]["depends"] == "show"


def test_stage_functions_still_run_as_plain_python_outside_a_pipeline() -> None:
    assert double(21) == 42
    assert kitchen_sink.stats([1.0, 3.0]).mean == 2.0


def test_configure_gives_a_builtin_its_own_name_and_secrets() -> None:
    from rtflow.stages.builtin.kafka_publish import kafka_publish

    publish = rtflow.configure(
        kafka_publish,
        name="publish-result",
        env={"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
        secrets=[rtflow.Secret(env="KAFKA_SASL_PASSWORD", secret="kafka", key="password")],
    )

    @rtflow.pipeline(name="configured")
    def p(n: int) -> None:
        publish(topic="out", payload={"n": 1}, key_field="n").after(show(n))

    template = templates(workflow_template(p))["publish-result"]
    assert template["container"]["args"][1] == "rtflow.stages.builtin.kafka_publish:kafka_publish"
    env = {e["name"]: e for e in template["container"]["env"]}
    assert env["KAFKA_SECURITY_PROTOCOL"] == {
        "name": "KAFKA_SECURITY_PROTOCOL",
        "value": "SASL_SSL",
    }
    assert env["KAFKA_SASL_PASSWORD_FILE"] == {
        "name": "KAFKA_SASL_PASSWORD_FILE",
        "value": "/var/run/secrets/rtflow/kafka/password",
    }
    (source,) = template["volumes"][0]["projected"]["sources"]
    assert source == {
        "secret": {"name": "kafka", "items": [{"key": "password", "path": "kafka/password"}]}
    }
    assert template["retryStrategy"]["limit"] == 5  # the built-in's own options are kept
    assert kafka_publish.name == "kafka-publish"  # type: ignore[attr-defined]  # unchanged


def test_the_publish_builtin_reads_tls_and_sasl_from_env() -> None:
    from rtflow.stages.builtin.kafka_publish import security_from_env

    assert security_from_env(
        {
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "fraud",
            "KAFKA_SASL_PASSWORD": "from-a-secret",
            "KAFKA_SSL_CA_PEM": "-----BEGIN CERTIFICATE-----",
            "UNRELATED": "x",
        }
    ) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "fraud",
        "sasl.password": "from-a-secret",
        "ssl.ca.pem": "-----BEGIN CERTIFICATE-----",
    }
    assert security_from_env({}) == {}


def test_kafka_credentials_can_come_from_files_mounted_from_secrets(tmp_path: Path) -> None:
    from rtflow.stages.builtin.kafka_publish import security_from_env

    (tmp_path / "user").write_text("fraud\n", encoding="utf-8")  # as a Secret's file may end
    (tmp_path / "password").write_text("s3cret", encoding="utf-8")
    assert security_from_env(
        {
            "KAFKA_SASL_USERNAME_FILE": str(tmp_path / "user"),
            "KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "password"),
            "KAFKA_SSL_CA_LOCATION": "/var/run/secrets/rtflow/kafka/ca.crt",
        }
    ) == {
        "sasl.username": "fraud",
        "sasl.password": "s3cret",
        "ssl.ca.location": "/var/run/secrets/rtflow/kafka/ca.crt",
    }
