"""rtflow lint finds its tools (the Argo linters, kustomize, the schemas) the same way in an
editable and in a normal install, and its advice names a command that exists
(rtflow.verify.tools_home); what it skipped is said once, however many overlays it built."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from compiled import PIPELINES, ROOT
from components import component_missing

# setuptools' package-dir of pyproject.toml: where a normal install puts each folder.
PACKAGE_DIRS = {"sdk": "rtflow", "generators": "rtflow/generators", "gpu": "rtflow/gpu"}
PACKAGE_DIRS["stages"] = "rtflow/stages"
TOOL_VARIABLES = ("RTFLOW_TOOLS", "RTFLOW_ARGO_LINT", "RTFLOW_ARGO_EVENTS_LINT", "RTFLOW_KUSTOMIZE")
TOOL_VARIABLES += ("RTFLOW_CRD_SCHEMAS", "RTFLOW_ARGOCD_SCHEMAS", "RTFLOW_ARGO_EVENTS_SCHEMA")


@pytest.fixture(scope="module")
def site_packages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """rtflow laid out as a normal (non-editable) install lays it out, far from the checkout."""
    site = tmp_path_factory.mktemp("install") / "lib" / "site-packages"
    for folder, target in PACKAGE_DIRS.items():
        shutil.copytree(
            ROOT / folder, site / target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return site


def run(
    *args: str, cwd: Path, site: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in TOOL_VARIABLES}
    if site is not None:
        clean["PYTHONPATH"] = str(site)
    return subprocess.run(
        [sys.executable, "-m", "rtflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
    )


def compile_into(tmp_path: Path, pipeline: Path) -> Path:
    out = tmp_path / "out"
    result = run("compile", str(pipeline), "-o", str(out), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return out


def skipped(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.startswith("skipped: ")]


def commands_exist(line: str) -> None:
    """Every "run `SCRIPT` in FOLDER" of an advice names a script that is there."""
    named = re.findall(r"run `([^`]+)` in (/\S+?) \(", line)
    assert named, line
    for script, folder in named:
        assert (Path(folder) / script).is_file(), line


def test_the_copy_is_what_python_imports(site_packages: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import rtflow.verify.lint as m; print(m.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site_packages)},
    )
    assert result.stdout.strip() == str(site_packages / "rtflow/verify/lint.py"), result.stderr


def test_installed_outside_a_checkout_the_advice_names_no_site_packages_path(
    site_packages: Path, tmp_path: Path
) -> None:
    out = compile_into(tmp_path, ROOT / "examples/support_triage.py")
    cache = tmp_path / "cache"
    result = run(
        "lint", str(out), cwd=tmp_path, site=site_packages, env={"XDG_CACHE_HOME": str(cache)}
    )
    assert "Traceback" not in result.stderr
    lines = [line for line in skipped(result) if line.startswith("skipped: argo-lint: ")]
    (argo_lint,) = lines
    assert str(site_packages) not in result.stdout
    assert f"put it at {cache / 'rtflow/tools/bin/argo-lint'}" in argo_lint
    assert "run `tools/install-argo-linters.sh` in an rtflow source checkout" in argo_lint
    assert "set RTFLOW_TOOLS to its .tools folder" in argo_lint


def test_installed_or_editable_a_checkout_s_tools_are_found_alike(
    site_packages: Path, tmp_path: Path
) -> None:
    if not (ROOT / ".tools/bin/argo-lint").is_file():
        component_missing(f"{ROOT / '.tools/bin/argo-lint'} is not built (tools/provision.sh)")
    out = compile_into(tmp_path, PIPELINES / "with_environments.py")
    editable = run("lint", str(out), cwd=ROOT)
    installed = run("lint", str(out), cwd=ROOT, site=site_packages)
    assert installed.stdout == editable.stdout
    assert installed.returncode == editable.returncode == 0, installed.stdout
    assert not any("not available" in line for line in skipped(installed))


def test_tools_moved_by_rtflow_tools_are_looked_for_there(tmp_path: Path) -> None:
    out = compile_into(tmp_path, ROOT / "examples/support_triage.py")
    elsewhere = tmp_path / "tools"
    result = run("lint", str(out), cwd=ROOT, env={"RTFLOW_TOOLS": str(elsewhere)})
    (argo_lint,) = [line for line in skipped(result) if line.startswith("skipped: argo-lint: ")]
    assert f"neither {elsewhere / 'bin/argo-lint'} nor PATH has argo-lint" in argo_lint
    assert f"it writes {ROOT / '.tools/bin/argo-lint'}), or put it at {elsewhere}" in argo_lint
    assert "($RTFLOW_TOOLS is set)" in argo_lint
    commands_exist(argo_lint)


def test_each_skip_is_said_once_with_the_command_that_fixes_it(tmp_path: Path) -> None:
    """with_environments has two overlays: the files and both builds were each checked, and
    each said the same skip (three times, before)."""
    out = compile_into(tmp_path, PIPELINES / "with_environments.py")
    nowhere = tmp_path / "nowhere"
    result = run(
        "lint",
        str(out),
        cwd=ROOT,
        env={
            "RTFLOW_TOOLS": str(nowhere),
            "RTFLOW_CRD_SCHEMAS": str(nowhere),
            "RTFLOW_KUSTOMIZE": str(nowhere / "kustomize"),
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = skipped(result)
    assert len(lines) == len(set(lines)), lines
    heads = sorted(line.split(":")[1].strip() for line in lines)
    assert heads == [
        "argo-cd-schema",
        "argo-events-lint",
        "argo-events-schema",
        "argo-lint",
        "kustomize",
    ], lines
    (kustomize,) = [line for line in lines if line.startswith("skipped: kustomize: ")]
    assert kustomize.startswith("skipped: kustomize: 2 overlay(s) not built")
    for line in lines:
        if "`" in line:
            commands_exist(line)
