"""Both install modes, each in a fresh virtualenv from a copy of the repository (issue #14):
``pip install .`` and an editable install. In each, rtflow compiles the examples, ``rtflow lint``
runs with the real Argo linters and the upstream schemas (nothing skipped), and ``mypy --strict``
type-checks the examples against the installed rtflow.

The editable install is setuptools' strict mode (``--config-settings editable_mode=strict``): a
tree of links that type checkers and IDEs read. The default (lenient) mode maps ``rtflow`` to
``sdk/`` through an import hook that mypy and IDEs cannot see, so they report rtflow's modules as
missing; the README says so. Slow: each mode installs rtflow's dependencies (minutes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from components import component_missing
from repo_copy import ROOT, copy_of_repository

pytestmark = pytest.mark.slow

MODES = {
    "regular": ["."],
    "editable": ["-e", ".", "--config-settings", "editable_mode=strict"],
}


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.parametrize("mode", sorted(MODES))
def test_install_mode_lints_with_the_real_linters_and_type_checks(
    mode: str, tmp_path: Path
) -> None:
    tools = ROOT / ".tools"
    if not (tools / "bin" / "argo-lint").exists():
        component_missing("the Argo linters are not provisioned (tools/provision.sh)")
    work = copy_of_repository(tmp_path / "repo")
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", str(venv)], tmp_path, dict(os.environ))
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env.update(PATH=os.pathsep.join([str(bin_dir), env.get("PATH", "")]),
               PIP_DISABLE_PIP_VERSION_CHECK="1", RTFLOW_TOOLS=str(tools))  # fmt: skip
    run([str(bin_dir / "pip"), "install", "-q", *MODES[mode], "mypy", "types-PyYAML"], work, env)
    imported = run([str(bin_dir / "python"), "-c", "import rtflow; print(rtflow.__file__)"],
                   tmp_path, env).stdout  # fmt: skip
    if mode == "regular":
        assert "site-packages" in imported  # the installed copy, not the checkout
    out = tmp_path / "out"
    run([str(bin_dir / "rtflow"), "compile", "examples/fraud_detection.py",
         "examples/support_triage.py", "-o", str(out)], work, env)  # fmt: skip
    # from outside any checkout: the tools are found through $RTFLOW_TOOLS in both modes
    lint = run([str(bin_dir / "rtflow"), "lint", str(out), "--format", "json"], tmp_path, env)
    report = json.loads(lint.stdout)
    assert report["ok"] and report["checked"] > 50
    assert report["skipped"] == [], report["skipped"]  # argo lint, argo-events lint, schemas ran
    typed = run(
        [str(bin_dir / "mypy"), "--strict", "examples/fraud_detection.py",
         "examples/support_triage.py"],
        work, {**env, "MYPYPATH": str(work / "examples")},
    )  # fmt: skip
    assert "Success: no issues found" in typed.stdout
