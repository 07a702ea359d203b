"""``rtflow.otherwise()``: the ``when`` block just closed, negated; compiled to Argo's ``when``,
decided the same way by the local run and the stream plane, misuse refused in one line."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import strict_schema
from compiled import compile_docs, tasks, workflow_template
from components import component_missing
from local_pipelines import language

import rtflow
from rtflow.generators.compiler import compile_pipelines
from rtflow.generators.writers import write_folder
from rtflow.stages import semantics
from rtflow.stages.events import ListSource, MemorySink
from rtflow.stages.local import run_local
from rtflow.stages.stream.batch import EventState
from rtflow.stages.stream.steps import Gate
from rtflow.verify.argo_linters import LinterUnavailable, find_argo_lint, run_argo_lint

RISK = "{{tasks.score.outputs.parameters.result}}"


def test_otherwise_compiles_to_the_negated_when() -> None:
    dag = tasks(workflow_template(language.branches))
    assert dag["high"]["when"] == f"{RISK} > 0.8"
    assert dag["middle"]["when"] == f"(!({RISK} > 0.8)) && ({RISK} > 0.3)"
    assert dag["low"]["when"] == f"(!({RISK} > 0.8)) && (!({RISK} > 0.3))"
    assert "when" not in dag["always"]
    assert {t["depends"] for t in dag.values() if "depends" in t} == {"score"}


def test_the_compiled_template_is_strictly_valid_and_passes_argo_lint(tmp_path: Path) -> None:
    for doc in compile_docs(language.branches, language.gated):
        assert strict_schema.errors_any(doc) == [], doc["metadata"]["name"]
    try:
        find_argo_lint()
    except LinterUnavailable as exc:
        component_missing(str(exc))
    write_folder(compile_pipelines([language.branches.build(), language.gated.build()]), tmp_path)
    manifests = sorted(tmp_path.rglob("workflowtemplate-*.yaml"))
    assert len(manifests) == 2
    result = run_argo_lint(manifests)
    assert result.ok, "\n".join(result.findings)


def test_compiling_twice_gives_the_same_bytes() -> None:
    first = compile_docs(language.branches)
    assert compile_docs(language.branches) == first
    assert language.branches.build() == language.branches.build()


@pytest.mark.parametrize(
    ("amount", "ran"),
    [(90.0, "high"), (80.0, "middle"), (50.0, "middle"), (30.0, "low"), (10.0, "low")],
)
def test_the_local_run_takes_exactly_one_branch(
    amount: float, ran: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out, dead = MemorySink(), MemorySink()
    summary = run_local(
        language.branches.build(),
        ListSource([{"amount": amount}]),
        output=out,
        dead_letter=dead,
        log_dir=tmp_path,
    )
    assert summary.failed == 0 and not dead.records, dead.records
    (record,) = out.records
    branches = {"high", "middle", "low"}
    assert set(record["outputs"]) & branches == {ran}
    assert set(record["skipped"]) == branches - {ran}
    assert record["outputs"]["always"]["result"] == f"always {amount / 100}"


@pytest.mark.parametrize("risk", [0.95, 0.8, 0.5, 0.3, 0.0])
def test_the_stream_plane_gate_decides_like_the_workflow_plane(risk: float) -> None:
    built = language.branches.build()
    for task in built.tasks:
        if task.when is None:
            continue
        event = EventState(message=None)  # type: ignore[arg-type]
        event.outputs = {"score": {"result": risk}}
        event.phases = {"score": "Succeeded"}
        gate = Gate(task, built.stage(task.stage))
        expected = semantics.evaluate(
            task.when, inputs={}, outputs={"score": {"result": repr(risk)}}, workflow={}
        )
        assert gate.ready(event) is expected, (task.name, risk)
        assert event.phases.get(task.name) == (None if expected else "Skipped")


# -- misuse -----------------------------------------------------------------------------------


@rtflow.stage(image=language.IMAGE)
def flag(x: float) -> bool:
    return x > 0


@rtflow.stage(image=language.IMAGE)
def note(x: float) -> str:
    return str(x)


def _no_when(x: float) -> None:
    with rtflow.otherwise():
        note(x)


def _call_between(x: float) -> None:
    f = flag(x)
    with rtflow.when(f):
        note(x)
    note(x)
    with rtflow.otherwise():
        note(x)


def _inside_its_when(x: float) -> None:
    f = flag(x)
    with rtflow.when(f):
        note(x)
        with rtflow.otherwise():
            note(x)


def _twice(x: float) -> None:
    f = flag(x)
    with rtflow.when(f):
        note(x)
    with rtflow.otherwise():
        note(x)
    with rtflow.otherwise():
        note(x)


def _after_an_inner_when(x: float) -> None:
    f = flag(x)
    with rtflow.when(f):
        with rtflow.when(f):
            note(x)
        note(x)
    with rtflow.when(f), rtflow.otherwise():  # its when (just above) is not at this level
        note(x)


def _in_the_exit_handler_after_a_main_when(x: float) -> None:
    f = flag(x)
    with rtflow.when(f):
        note(x)
    with rtflow.on_exit(), rtflow.otherwise():
        note(x)


@pytest.mark.parametrize(
    ("body", "stage", "problem"),
    [
        (_no_when, None, "otherwise() does not follow a `with rtflow.when(...)` block"),
        (_call_between, "note", "a stage is called between the `when` block and its otherwise()"),
        (_inside_its_when, None, "otherwise() does not follow"),
        (_twice, None, "otherwise() does not follow"),
        (_after_an_inner_when, None, "otherwise() does not follow"),
        (_in_the_exit_handler_after_a_main_when, None, "otherwise() does not follow"),
    ],
    ids=lambda v: getattr(v, "__name__", None) or str(v)[:12],
)
def test_misuse_fails_at_compile_time_in_one_line(
    body: Callable[[float], None], stage: str | None, problem: str
) -> None:
    pipeline = rtflow.pipeline(name="misused")(body)
    with pytest.raises(rtflow.DefinitionError) as caught:
        pipeline.build()
    error = caught.value
    assert error.pipeline == "misused" and error.field == "otherwise"
    assert error.stage == stage
    assert problem in error.problem
    assert "right after the `with rtflow.when(...):` block" in error.fix
    assert "\n" not in str(error)


def test_a_stage_in_otherwise_cannot_read_an_output_of_its_when() -> None:
    def body(x: float) -> None:
        f = flag(x)
        with rtflow.when(f):
            made = note(x)
        with rtflow.otherwise():
            note(made)  # type: ignore[arg-type]

    with pytest.raises(rtflow.DefinitionError, match="runs only under a `when`"):
        rtflow.pipeline(name="crossed")(body).build()


def test_the_cli_prints_the_error_in_one_line_and_exits_2(tmp_path: Path) -> None:
    source = tmp_path / "orphan.py"
    source.write_text(
        "import rtflow\n\n"
        "@rtflow.stage(image='ghcr.io/acme/x:1')\n"
        "def note(x: float) -> str:\n    return str(x)\n\n"
        "@rtflow.pipeline(name='orphan')\n"
        "def orphan(x: float) -> None:\n"
        "    with rtflow.otherwise():\n        note(x)\n"
    )
    rtflow_cli = Path(sys.executable).parent / "rtflow"
    result = subprocess.run(
        [str(rtflow_cli), "compile", str(source), "-o", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [
        "rtflow: error: pipeline 'orphan', field 'otherwise': otherwise() does not follow a "
        "`with rtflow.when(...)` block at its level; put `with rtflow.otherwise():` right after "
        "the `with rtflow.when(...):` block it completes, at the same indentation, with no "
        "stage call between them"
    ]
