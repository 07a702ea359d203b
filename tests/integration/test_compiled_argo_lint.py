"""What rtflow compiles passes the real `argo lint --offline` (Argo Workflows 4.1) and
`argo-events lint` (Argo Events 1.9)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from compiled import ROOT
from components import component_missing
from pipelines import kitchen_sink, two_pipelines, yaml_booleans

from rtflow import ir
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.stream import handoff
from rtflow.generators.writers import write_folder
from rtflow.loader import load_pipelines
from rtflow.verify.argo_linters import (
    LinterUnavailable,
    find_argo_events_lint,
    find_argo_lint,
    run_argo_events_lint,
    run_argo_lint,
)
from rtflow.verify.lint import lint_paths

pytestmark = pytest.mark.integration


def _require(find: Callable[[], Path]) -> Path:
    try:
        return find()
    except LinterUnavailable as exc:
        component_missing(str(exc))


@pytest.fixture
def argo_lint() -> Path:
    return _require(find_argo_lint)


@pytest.fixture
def argo_events_lint() -> Path:
    return _require(find_argo_events_lint)


def example_pipelines() -> list[ir.Pipeline]:
    examples = sorted((ROOT / "examples").glob("*.py"))
    return [p.build() for e in examples for p in load_pipelines(str(e))[1]]


def test_examples_and_every_feature_pass_argo_lint(argo_lint: Path, tmp_path: Path) -> None:
    pipelines = [
        *example_pipelines(),
        kitchen_sink.kitchen_sink.build(),
        two_pipelines.ingest.build(),
        two_pipelines.nightly_report.build(),
        yaml_booleans.yes_no.build(),  # names Go's YAML 1.1 reader would take for booleans
    ]
    write_folder(compile_pipelines(pipelines), tmp_path)
    manifests = sorted(tmp_path.rglob("workflowtemplate-*.yaml"))
    # a stream pipeline that hands nothing to the workflow plane has no WorkflowTemplate
    assert len(manifests) == sum(handoff.workflow_part(p) is not None for p in pipelines) > 0
    result = run_argo_lint(manifests)
    assert result.ok, "\n".join(result.findings)


def test_examples_pass_argo_events_lint(argo_events_lint: Path, tmp_path: Path) -> None:
    write_folder(compile_pipelines(example_pipelines()), tmp_path)
    events = sorted(
        p
        for pattern in ("eventsource-*.yaml", "sensor-*.yaml", "eventbus-*.yaml")
        for p in tmp_path.rglob(pattern)
    )
    assert {p.name.split("-")[0] for p in events} == {"eventsource", "sensor", "eventbus"}
    result = run_argo_events_lint(events)
    assert result.ok, "\n".join(result.findings)


def test_argo_lint_rejects_a_broken_compile(argo_lint: Path, tmp_path: Path) -> None:
    """The linter really reads our files: break one dependency and it must say so."""
    write_folder(compile_pipelines([kitchen_sink.kitchen_sink.build()]), tmp_path)
    (path,) = tmp_path.rglob("workflowtemplate-*.yaml")
    path.write_text(
        path.read_text().replace("depends: process && stats", "depends: process && nope")
    )
    result = run_argo_lint([path])
    assert not result.ok
    assert any("nope" in line for line in result.findings)


def test_rtflow_lint_with_the_real_linters_is_clean_on_the_examples(
    argo_lint: Path, argo_events_lint: Path, tmp_path: Path
) -> None:
    write_folder(compile_pipelines(example_pipelines()), tmp_path)
    report = lint_paths([tmp_path])
    assert report.ok, report.human()
    assert report.skipped == []
    (broken,) = tmp_path.rglob("workflowtemplate-fraud-detection.yaml")
    broken.write_text(broken.read_text().replace("depends: review", "depends: nope"))
    rules = {f.rule for f in lint_paths([tmp_path]).findings}
    assert {"argo-lint", "cross-resource"} <= rules
