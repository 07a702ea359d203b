"""rtflow lint checks Argo Events objects as strictly as Argo Workflows objects: against Argo
Events' own schema (unknown fields, wrong types; rtflow.verify.events_schema), and a Sensor's
dependencies against the EventSources linted with it (rtflow.verify.events_refs)."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compiled import ROOT
from components import component_missing

from rtflow.verify import events_schema
from rtflow.verify.lint import lint_paths

FIXTURES = ROOT / "tests/integration/fixtures/argo/valid"
EVENT_SOURCE = yaml.safe_load((FIXTURES / "eventsource-kafka.yaml").read_text())
SENSOR = yaml.safe_load((FIXTURES / "sensor-submit-workflow.yaml").read_text())
# The Sensor's trigger starts this WorkflowTemplate, and its ServiceAccount is named: the
# bundle's checks of triggers want both among the linted objects.
TEMPLATE = yaml.safe_load((FIXTURES / "workflowtemplate-pipeline.yaml").read_text())


def require_schema() -> None:
    try:
        events_schema.schema_path()
    except events_schema.EventsSchemaUnavailable as exc:
        component_missing(str(exc))


def write(folder: Path, **documents: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, document in documents.items():
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return folder


def account() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "rtflow-sensor", "namespace": "rtflow-fixtures"},
    }


def events_findings(folder: Path) -> list[tuple[str, str, str, str]]:
    """The structure and cross-resource findings about Argo Events objects (the fixtures'
    other objects are not hardened: their security findings are not what is tested here)."""
    report = lint_paths([folder], real_linters=False)
    return [
        (f.rule, f.object, f.field, f.message)
        for f in report.findings
        if f.rule in ("structure", "cross-resource")
        and (f.object.split("/")[0] in events_schema.KINDS or f.message.startswith("Sensor "))
    ]


def test_the_fixtures_are_clean(tmp_path: Path) -> None:
    require_schema()
    folder = write(tmp_path, source=EVENT_SOURCE, sensor=SENSOR, template=TEMPLATE, sa=account())
    assert events_findings(folder) == []


def test_an_unknown_field_and_a_misspelt_event_source_are_found(tmp_path: Path) -> None:
    """The issue's case: both passed clean, with the real argo-events linter too."""
    require_schema()
    sensor = copy.deepcopy(SENSOR)
    sensor["spec"]["template"]["serviceAcountName"] = "rtflow-sensor"  # unknown
    sensor["spec"]["dependencies"][0]["eventSourceName"] = "rtflow-fixture-kafak"
    folder = write(tmp_path, source=EVENT_SOURCE, sensor=sensor, template=TEMPLATE, sa=account())
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "lint", str(folder), "--output", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    found = {(f["rule"], f["field"], f["message"]) for f in json.loads(result.stdout)["findings"]}
    assert ("structure", "spec.template.serviceAcountName", "unknown field") in found
    assert (
        "cross-resource",
        "spec.dependencies[0].eventSourceName",
        "EventSource 'rtflow-fixture-kafak' is not among the linted EventSources of the "
        "Sensor's namespace (rtflow-fixture-kafka); did you mean 'rtflow-fixture-kafka'?",
    ) in found


@pytest.mark.parametrize(
    ("kind", "change", "field", "message"),
    [
        (
            "EventSource",
            lambda d: d["spec"]["kafka"]["orders"].update(topc="orders"),
            "spec.kafka.orders.topc",
            "unknown field",
        ),
        (
            "EventSource",
            lambda d: d["spec"]["kafka"]["orders"].update(jsonBody="yes"),
            "spec.kafka.orders.jsonBody",
            "'yes' is not of type 'boolean'",
        ),
        (
            "Sensor",
            lambda d: d["spec"]["dependencies"][0].update(eventSoureName="x"),
            "spec.dependencies[0].eventSoureName",
            "unknown field",
        ),
        (
            "Sensor",
            lambda d: d["spec"]["triggers"][0].update(retryStrategy={"steps": "three"}),
            "spec.triggers[0].retryStrategy.steps",
            "'three' is not of type 'integer'",
        ),
        (
            "Sensor",
            lambda d: d.update(apiVersion="argoproj.io/v1"),
            "apiVersion",
            "'argoproj.io/v1alpha1' was expected",
        ),
        (
            "EventBus",
            lambda d: d["spec"]["jetstream"].update(replica=3),
            "spec.jetstream.replica",
            "unknown field",
        ),
    ],
)
def test_each_kind_is_checked_strictly(
    tmp_path: Path, kind: str, change: Any, field: str, message: str
) -> None:
    require_schema()
    documents = {
        "source": copy.deepcopy(EVENT_SOURCE),
        "sensor": copy.deepcopy(SENSOR),
        "bus": yaml.safe_load((FIXTURES / "eventbus-jetstream.yaml").read_text()),
        "template": TEMPLATE,
        "sa": account(),
    }
    target = next(d for d in documents.values() if d["kind"] == kind)
    change(target)
    found = events_findings(write(tmp_path, **documents))
    assert ("structure", f"{kind}/{target['metadata']['name']}", field, message) in found, found


def test_an_event_the_event_source_does_not_define_is_found(tmp_path: Path) -> None:
    sensor = copy.deepcopy(SENSOR)
    sensor["spec"]["dependencies"][0]["eventName"] = "order"
    found = events_findings(
        write(tmp_path, source=EVENT_SOURCE, sensor=sensor, template=TEMPLATE, sa=account())
    )
    assert (
        "cross-resource",
        "Sensor/rtflow-fixture-pipeline",
        "spec.dependencies[0].eventName",
        "EventSource 'rtflow-fixture-kafka' defines no event 'order' (it defines orders); "
        "did you mean 'orders'?",
    ) in found


def test_another_namespace_or_bus_is_not_the_same_event_source(tmp_path: Path) -> None:
    source = copy.deepcopy(EVENT_SOURCE)
    source["metadata"]["namespace"] = "elsewhere"
    other = copy.deepcopy(EVENT_SOURCE)
    other["metadata"]["name"] = "other"
    other["spec"]["eventBusName"] = "jetstream"
    sensor = copy.deepcopy(SENSOR)
    sensor["spec"]["dependencies"].append(
        {"name": "more", "eventSourceName": "other", "eventName": "orders"}
    )
    found = events_findings(
        write(tmp_path, source=source, other=other, sensor=sensor, template=TEMPLATE, sa=account())
    )
    messages = [m for rule, _, _, m in found if rule == "cross-resource"]
    assert (
        "EventSource 'rtflow-fixture-kafka' is in another namespace ('elsewhere') than the "
        "Sensor ('rtflow-fixtures'); a Sensor only hears EventSources of its own"
    ) in messages
    assert (
        "the Sensor uses EventBus 'default', but EventSource 'other' publishes to 'jetstream'"
        in messages
    )


def compile_support_triage(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    compiled = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "compile", "examples/support_triage.py", "-o", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert compiled.returncode == 0, compiled.stderr
    return out


def test_an_event_source_not_linted_is_a_warning_not_a_finding(tmp_path: Path) -> None:
    """Decided in rtflow.verify.events_refs: with no EventSource of the Sensor's namespace
    among the linted files, the reference cannot be checked; lint says so, once (not again for
    each overlay build), and passes."""
    out = compile_support_triage(tmp_path)
    for source in out.glob("support-triage/base/eventsource-*.yaml"):
        source.unlink()
    kustomization = out / "support-triage/base/kustomization.yaml"
    listed = yaml.safe_load(kustomization.read_text())
    listed["resources"] = [r for r in listed["resources"] if not r.startswith("eventsource-")]
    kustomization.write_text(yaml.safe_dump(listed))
    # As if written by hand: rtflow's own Sensor (labelled with its pipeline) is compiled with
    # its EventSources, so one missing there is a finding (tests/test_lint.py).
    sensor = out / "support-triage/base/sensor-support-triage.yaml"
    document = yaml.safe_load(sensor.read_text())
    del document["metadata"]["labels"]["rtflow.dev/pipeline"]
    sensor.write_text(yaml.safe_dump(document))
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "lint", str(out), "--no-real-linters"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {sensor}: Sensor/support-triage: spec.dependencies[{index}].eventSourceName: "
        f"EventSource {name!r} not checked: none of the linted files holds an EventSource in "
        "the Sensor's namespace; lint the Sensor together with its EventSource's file to check "
        "the name and its events [cross-resource]"
        for index, name in enumerate(["support-triage-webhook", "support-triage-calendar"])
    ]
    assert result.stdout.endswith("clean, 2 warning(s)\n")


def test_without_the_schema_lint_says_once_what_it_skipped(tmp_path: Path) -> None:
    out = compile_support_triage(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "rtflow.cli", "lint", str(out), "--no-real-linters"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "RTFLOW_ARGO_EVENTS_SCHEMA": str(tmp_path / "no")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (skipped,) = [line for line in result.stdout.splitlines() if "argo-events-schema" in line]
    # The base and two overlay builds hold the same 4 objects: listed once, said once.
    assert skipped.startswith("skipped: argo-events-schema: 4 object(s) not checked")
    assert "EventBus/support-bus" in skipped and f"{tmp_path / 'no'} is not a file" in skipped


def test_the_schema_is_the_release_the_linter_is_built_from() -> None:
    go_mod = (ROOT / "tools/argo-events-lint/go.mod").read_text()
    (pinned,) = re.findall(r"github\.com/argoproj/argo-events (v\S+)", go_mod)
    assert pinned == events_schema.VERSION
    spec = importlib.util.spec_from_file_location("argo_schemas", ROOT / "tools/argo_schemas.py")
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = tool
    spec.loader.exec_module(tool)
    (events,) = [s for s in tool.SCHEMAS if s.module == events_schema.MODULE]
    assert (events.version, events.file) == (events_schema.VERSION, events_schema.FILE)
    go_sum = (ROOT / "tools/argo-events-lint/go.sum").read_text()
    assert f"{events_schema.MODULE} {pinned} {events.sum}" in go_sum
