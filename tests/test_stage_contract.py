"""The compiled template and the stage runtime agree: run the container's exact command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from compiled import PIPELINES, ROOT, templates, workflow_template
from pipelines import kitchen_sink

from rtflow.stages import contract


def run_template_command(
    template: dict, inputs: dict[str, str], outputs: Path
) -> subprocess.CompletedProcess[str]:
    """Substitute Argo's {{inputs.parameters.x}} as the controller would, then run it."""
    container = template["container"]
    argv = [*container["command"], *container["args"]]
    substituted = []
    for arg in argv:
        for name, value in inputs.items():
            arg = arg.replace(f"{{{{inputs.parameters.{name}}}}}", value)
        substituted.append(arg.replace(contract.OUTPUTS_DIR, str(outputs)))
    argv = [sys.executable if a == "python" else a for a in substituted]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PIPELINES.parent), str(ROOT)])}
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=PIPELINES.parent)


def test_function_stage_runs_from_its_compiled_command_line(tmp_path: Path) -> None:
    stats = templates(workflow_template(kitchen_sink.kitchen_sink))["stats"]
    result = run_template_command(stats, {"values": "[1, 2, 6]", "label": "x"}, tmp_path)
    assert result.returncode == contract.EXIT_OK, result.stderr
    written = {p.name: p.read_text() for p in tmp_path.iterdir()}
    assert written == {"mean": "3.0", "count": "3", "ok": "true"}
    (log,) = [json.loads(line) for line in result.stderr.splitlines()]
    assert log["event"] == "succeeded"


def test_a_bad_input_exits_with_the_code_retries_skip(tmp_path: Path) -> None:
    stats = templates(workflow_template(kitchen_sink.kitchen_sink))["stats"]
    result = run_template_command(stats, {"values": "not json", "label": "x"}, tmp_path)
    assert result.returncode == contract.EXIT_BAD_INPUT
    assert json.loads(result.stderr.splitlines()[-1])["event"] == "bad_input"
    assert not list(tmp_path.iterdir())
    assert str(contract.EXIT_BAD_INPUT) in stats["retryStrategy"]["expression"]


def test_a_failing_function_is_retryable(tmp_path: Path) -> None:
    stats = templates(workflow_template(kitchen_sink.kitchen_sink))["stats"]
    result = run_template_command(stats, {"values": "[]", "label": "x"}, tmp_path)  # 0 / 0
    assert result.returncode == contract.EXIT_FAILED
    assert "ZeroDivisionError" in result.stderr
