"""Every generated document passes its strict check: the upstream Argo Workflows 4.1.4 and Argo
Events 1.9.11 schemas with unknown fields forbidden, kubernetes-validate strict for core kinds."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import strict_schema
from compiled import ROOT, compile_docs
from components import component_missing
from pipelines import kitchen_sink, two_pipelines

from rtflow.loader import load_pipelines

EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.fixture(scope="module", autouse=True)
def schemas_present() -> None:
    for name in (strict_schema.WORKFLOWS, strict_schema.EVENTS):
        path = strict_schema.schema_path(name)
        if not path.exists():
            component_missing(f"{path} is missing: run tools/provision.sh (needs go)")


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: Path(p).stem)
def test_examples_are_strictly_valid(example: Path) -> None:
    _, pipelines = load_pipelines(str(example))
    docs = compile_docs(*pipelines)
    assert docs
    for doc in docs:
        assert strict_schema.errors_any(doc) == [], doc["metadata"]["name"]


def test_every_feature_is_strictly_valid() -> None:
    docs = compile_docs(
        kitchen_sink.kitchen_sink, two_pipelines.ingest, two_pipelines.nightly_report
    )
    for doc in docs:
        assert strict_schema.errors_any(doc) == []


def test_the_strict_check_catches_a_misplaced_field() -> None:
    (doc,) = [d for d in compile_docs(kitchen_sink.kitchen_sink) if d["kind"] == "WorkflowTemplate"]
    broken = copy.deepcopy(doc)
    broken["spec"]["templates"][0]["dag"]["tasks"][0]["retries"] = 3
    assert any("'retries' was unexpected" in e for e in strict_schema.errors(broken))
    wrong_type = copy.deepcopy(doc)
    wrong_type["spec"]["parallelism"] = "four"
    assert strict_schema.errors(wrong_type)
