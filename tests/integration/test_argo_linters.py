"""The real Argo linters accept hand-written valid manifests and reject broken ones.

``argo-lint`` is ``argo lint --offline`` of Argo Workflows 4.1 and ``argo-events-lint`` is
``argo-events lint`` of Argo Events 1.9 (plus EventBus validation), both built from the upstream
Go modules by tools/install-argo-linters.sh. Without them these tests skip, and fail under CI=true.

fixtures/argo/valid/ is one bundle (a WorkflowTemplate with a DAG, container, http and suspend
templates, ``when`` and ``withParam``; the ClusterWorkflowTemplate it references; a Workflow from
it; a kafka EventSource; a Sensor whose k8s trigger creates that Workflow; a JetStream EventBus).
fixtures/argo/invalid/ holds one broken document per file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from components import component_missing

from rtflow.verify.argo_linters import (
    ARGO_LINT,
    LinterUnavailable,
    LintResult,
    find_argo_events_lint,
    find_argo_lint,
    find_linter,
    run_argo_events_lint,
    run_argo_lint,
)

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures" / "argo"
VALID = FIXTURES / "valid"
INVALID = FIXTURES / "invalid"


@pytest.fixture(scope="module")
def argo_lint() -> Path:
    try:
        return find_argo_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))


@pytest.fixture(scope="module")
def argo_events_lint() -> Path:
    try:
        return find_argo_events_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))


def _explain(result: LintResult) -> str:
    return f"{' '.join(result.command)} -> exit {result.returncode}\n{result.output}"


def test_valid_bundle_passes_argo_lint(argo_lint: Path) -> None:
    result = run_argo_lint([VALID])
    assert result.ok, _explain(result)
    assert result.findings == ()
    assert result.command[0] == str(argo_lint)


def test_valid_bundle_passes_argo_events_lint(argo_events_lint: Path) -> None:
    result = run_argo_events_lint([VALID])
    assert result.ok, _explain(result)
    assert result.findings == ()
    # Upstream skips kinds it does not know without a word: make sure each one was linted.
    for name, kind in [
        ("eventsource-kafka.yaml", "EventSource"),
        ("sensor-submit-workflow.yaml", "Sensor"),
        ("eventbus-jetstream.yaml", "EventBus"),
    ]:
        assert f"✓ {VALID / name}: {kind} is valid" in result.output, _explain(result)


def test_template_refs_resolve_only_against_files_linted_together(argo_lint: Path) -> None:
    alone = run_argo_lint([VALID / "workflowtemplate-pipeline.yaml"])
    assert not alone.ok
    assert any(
        'couldn\'t find cluster workflow template "rtflow-fixture-shared"' in f
        for f in alone.findings
    ), _explain(alone)

    workflow = run_argo_lint([VALID / "workflow-from-template.yaml"])
    assert not workflow.ok
    assert any(
        'couldn\'t find workflow template "rtflow-fixture-pipeline"' in f for f in workflow.findings
    ), _explain(workflow)

    together = run_argo_lint(
        [
            VALID / "workflow-from-template.yaml",
            VALID / "workflowtemplate-pipeline.yaml",
            VALID / "clusterworkflowtemplate-shared.yaml",
        ]
    )
    assert together.ok, _explain(together)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("dag-unknown-dependency.yaml", "invalid dependency scoer"),
        ("withparam-unknown-task.yaml", "failed to resolve {{tasks.splitt.outputs.result}}"),
        ("unknown-field.yaml", 'unknown field "spec.podGc"'),
        (
            "templateref-missing.yaml",
            'couldn\'t find cluster workflow template "rtflow-fixture-not-there"',
        ),
    ],
)
def test_argo_lint_rejects(argo_lint: Path, fixture: str, expected: str) -> None:
    path = INVALID / fixture
    result = run_argo_lint([path])
    assert not result.ok, _explain(result)
    assert result.returncode == 1
    # -o simple: one line per finding, "FILE: in "NAME" (KIND): MESSAGE".
    assert len(result.findings) == 1, _explain(result)
    assert result.findings[0].startswith(f"{path}: in "), _explain(result)
    assert expected in result.findings[0], _explain(result)


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        (
            "sensor-no-eventsourcename.yaml",
            "Sensor validation failed: event dependency must define the EventSourceName",
        ),
        (
            "eventsource-kafka-no-topic.yaml",
            "EventSource validation failed: topic must be specified",
        ),
        (
            "eventbus-jetstream-no-version.yaml",
            "EventBus validation failed: "
            "invalid spec: a version for jetstream needs to be specified",
        ),
    ],
)
def test_argo_events_lint_rejects(argo_events_lint: Path, fixture: str, expected: str) -> None:
    path = INVALID / fixture
    result = run_argo_events_lint([path])
    assert not result.ok, _explain(result)
    assert result.findings == (f"{path}: {expected}",), _explain(result)


def test_argo_events_lint_reports_every_broken_file_of_a_folder(argo_events_lint: Path) -> None:
    result = run_argo_events_lint([INVALID])
    assert not result.ok
    assert len(result.findings) == 3, _explain(result)


def test_argo_lint_fails_on_nothing_to_lint_unless_allowed(argo_lint: Path) -> None:
    events_only = [VALID / "eventsource-kafka.yaml", VALID / "eventbus-jetstream.yaml"]
    result = run_argo_lint(events_only)
    assert not result.ok
    assert result.findings == ("found nothing to lint in the specified paths, failing...",)
    assert run_argo_lint(events_only, allow_nothing_to_lint=True).ok


def test_argo_lint_reports_yaml_that_does_not_parse(argo_lint: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("kind: WorkflowTemplate\nspec: [unclosed\n", encoding="utf-8")
    result = run_argo_lint([broken])
    assert not result.ok
    assert any("yaml file is not valid" in f for f in result.findings), _explain(result)
    # Beside files that lint cleanly the CLI only logs it and exits 0; the helper still fails.
    beside_valid = run_argo_lint([broken, VALID])
    assert beside_valid.returncode == 0
    assert not beside_valid.ok
    assert any("yaml file is not valid" in f for f in beside_valid.findings), _explain(beside_valid)


def test_missing_linter_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(ARGO_LINT.env_var, str(tmp_path / "no-such-binary"))
    with pytest.raises(LinterUnavailable) as excinfo:
        find_linter(ARGO_LINT)
    message = str(excinfo.value)
    assert "RTFLOW_ARGO_LINT" in message
    assert "tools/install-argo-linters.sh" in message
