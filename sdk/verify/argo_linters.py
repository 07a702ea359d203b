"""Run the real Argo linters on compiled manifests, offline.

Two binaries, built from the upstream Go modules by ``tools/install-argo-linters.sh``:

* ``argo-lint``: ``argo lint --offline`` of Argo Workflows (Workflows, WorkflowTemplates,
  CronWorkflows, ClusterWorkflowTemplates). Every path given is also the source of the
  (Cluster)WorkflowTemplates that ``templateRef`` and ``workflowTemplateRef`` resolve against, so
  lint a bundle in one call, never file by file.
* ``argo-events-lint``: ``argo-events lint`` of Argo Events (EventSources, Sensors), plus the
  controller's EventBus validation.

Each is looked up in ``$RTFLOW_ARGO_LINT`` / ``$RTFLOW_ARGO_EVENTS_LINT``, then in the tools
folder's ``bin/`` (:mod:`rtflow.verify.tools_home`: the same in an editable and a normal
install), then on ``PATH``; when none has it, :class:`LinterUnavailable` says where it looked
and how to build it, with a command that exists. A run returns a :class:`LintResult`: whether
the linter accepted the files, its findings one per line, and the exact command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rtflow.errors import RtflowError
from rtflow.verify import tools_home

INSTALL_SCRIPT = "tools/install-argo-linters.sh"
GO_NEEDS = "Go 1.26 and the Go module proxy"
DEFAULT_TIMEOUT_S = 300.0

# argo-lint -o simple: the summary lines it prints besides findings.
_ARGO_OK_LINE = "no linting errors found!"
_ARGO_NOTHING_LINE = "found nothing to lint in the specified paths, failing..."
_ARGO_ERROR_LOG = "level=ERROR"


@dataclass(frozen=True)
class Linter:
    """One linter binary: its file name, the variable that overrides it, what it runs."""

    name: str
    env_var: str
    runs: str


ARGO_LINT = Linter("argo-lint", "RTFLOW_ARGO_LINT", "argo lint --offline (Argo Workflows 4.1)")
ARGO_EVENTS_LINT = Linter(
    "argo-events-lint", "RTFLOW_ARGO_EVENTS_LINT", "argo-events lint (Argo Events 1.9)"
)


class LinterError(RtflowError):
    """A linter could not run to the end (as opposed to running and rejecting the files)."""


class LinterUnavailable(LinterError):
    """The linter binary is not where rtflow looks for it; the message says how to build it."""

    def __init__(self, linter: Linter, reason: str) -> None:
        self.linter = linter
        self.reason = reason
        advice = tools_home.provision_advice(INSTALL_SCRIPT, f"bin/{linter.name}", GO_NEEDS)
        super().__init__(
            f"{linter.name} ({linter.runs}) is not available: {reason}; {advice}, or set "
            f"{linter.env_var} to the binary"
        )


@dataclass(frozen=True)
class LintResult:
    """What one linter run said about the files.

    ``ok`` is the linter's own verdict (exit status 0). ``findings`` are the problems it reported,
    one per line, with the file and object they concern; when ``ok`` is true they can only be
    warnings. ``output`` is everything it printed, for a person.
    """

    linter: str
    command: tuple[str, ...]
    returncode: int
    ok: bool
    findings: tuple[str, ...]
    output: str


def tools_bin() -> Path:
    """The folder the built binaries are in (see :mod:`rtflow.verify.tools_home`)."""
    return tools_home.find().bin


def find_linter(linter: Linter) -> Path:
    """The binary for ``linter``: from its environment variable, the tools folder, or PATH."""
    override = os.environ.get(linter.env_var)
    if override:
        path = Path(override)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise LinterUnavailable(
                linter, f"{linter.env_var}={override} is not an executable file"
            )
        return path
    local = tools_bin() / linter.name
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which(linter.name)
    if found is not None:
        return Path(found)
    raise LinterUnavailable(
        linter, f"{linter.env_var} is not set, and neither {local} nor PATH has {linter.name}"
    )


def find_argo_lint() -> Path:
    return find_linter(ARGO_LINT)


def find_argo_events_lint() -> Path:
    return find_linter(ARGO_EVENTS_LINT)


def _paths(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    listed = [os.fspath(p) for p in paths]
    if not listed:
        raise ValueError("give at least one file or folder to lint")
    return listed


def _run(linter: Linter, command: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return run_tool(linter.name, command, timeout)


def run_tool(
    name: str, command: list[str], timeout: float, error: type[LinterError] = LinterError
) -> subprocess.CompletedProcess[str]:
    """Run a verify tool to the end, output as text; ``error`` (one line) when it cannot."""
    try:
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise error(f"{name} did not finish within {timeout:g} s: {command}") from exc
    except OSError as exc:
        raise error(f"{name} could not be started ({command[0]}): {exc}") from exc


def _lines(text: str) -> list[str]:
    return [line.rstrip() for line in text.splitlines() if line.strip()]


def run_argo_lint(
    paths: Sequence[str | os.PathLike[str]],
    *,
    strict: bool = True,
    kinds: Sequence[str] | None = None,
    allow_nothing_to_lint: bool = False,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> LintResult:
    """``argo lint --offline`` on all ``paths`` at once (files or folders, walked recursively).

    ``strict`` (the CLI's default) rejects unknown fields. ``kinds`` limits what is linted
    (workflows, workflowtemplates, cronworkflows, clusterworkflowtemplates). The CLI fails when
    the paths hold nothing it lints; ``allow_nothing_to_lint`` accepts that instead, for a bundle
    that has no Argo Workflows objects. Unlike the CLI's exit status, ``ok`` is also false when
    it logged an error (a file that is not YAML), which the CLI skips when others lint cleanly.
    """
    command = [
        os.fspath(find_argo_lint()),
        "--output=simple",
        "--no-color",
        f"--strict={'true' if strict else 'false'}",
    ]
    if kinds:
        command.append("--kinds=" + ",".join(kinds))
    command += ["--", *_paths(paths)]
    proc = _run(ARGO_LINT, command, timeout)
    stdout = _lines(proc.stdout)
    stderr = _lines(proc.stderr)
    findings = [line for line in stdout if line != _ARGO_OK_LINE] + stderr
    # argo lint logs a document that is not YAML at all (level=ERROR "yaml file is not valid") and
    # goes on: with other files to lint it still exits 0. A manifest that does not parse is never
    # valid, so such a log line fails the run here.
    ok = proc.returncode == 0 and not any(_ARGO_ERROR_LOG in line for line in stderr)
    if not ok and allow_nothing_to_lint and findings == [_ARGO_NOTHING_LINE]:
        ok, findings = True, []
    return LintResult(
        linter=ARGO_LINT.name,
        command=tuple(command),
        returncode=proc.returncode,
        ok=ok,
        findings=tuple(findings),
        output=proc.stdout + proc.stderr,
    )


def _events_findings(stdout: str) -> list[str]:
    """Fold argo-events-lint's report into one line per problem.

    It prints ``✓ FILE: Kind is valid`` per valid object, and per problem a line
    ``✗ FILE: ...failed`` (or ``! FILE: ...`` for a warning) followed by an indented
    ``Error: ...`` (or ``Note: ...``) line.
    """
    findings: list[str] = []
    for line in _lines(stdout):
        stripped = line.strip()
        if stripped.startswith("✓"):
            continue
        if line.startswith("  ") and findings and stripped.startswith(("Error:", "Note:")):
            detail = stripped.split(":", 1)[1].strip()
            findings[-1] = f"{findings[-1]}: {detail}"
        elif stripped.startswith("✗"):
            findings.append(stripped[1:].strip())
        elif stripped.startswith("!"):
            findings.append("warning: " + stripped[1:].strip())
        else:
            findings.append(stripped)
    return findings


def run_argo_events_lint(
    paths: Sequence[str | os.PathLike[str]],
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
) -> LintResult:
    """``argo-events lint -R`` on ``paths`` (files or folders, walked recursively).

    Files with no EventSource, Sensor or EventBus are skipped without a word, as upstream does;
    so is YAML that does not parse, which ``argo-lint`` reports.
    """
    command = [os.fspath(find_argo_events_lint()), "--recursive", "--", *_paths(paths)]
    proc = _run(ARGO_EVENTS_LINT, command, timeout)
    findings = _events_findings(proc.stdout) + _lines(proc.stderr)
    return LintResult(
        linter=ARGO_EVENTS_LINT.name,
        command=tuple(command),
        returncode=proc.returncode,
        ok=proc.returncode == 0,
        findings=tuple(findings),
        output=proc.stdout + proc.stderr,
    )
