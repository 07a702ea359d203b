"""What ``rtflow lint`` reports: findings, warnings, and what it could not check.

A finding fails the lint (exit 1). A warning does not: it is something lint could not decide
from the files given (a Sensor whose EventSource is not among them), said so that nothing is
passed over in silence. ``skipped`` says what was not checked and why (a linter or a schema not
provisioned); each reason is said once, however many objects, files or overlay builds it kept
from being checked (they are listed on its line).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Finding:
    rule: str
    file: str
    object: str
    field: str
    message: str

    def line(self) -> str:
        parts = [p for p in (self.file, self.object, self.field) if p]
        return ": ".join([*parts, f"{self.message} [{self.rule}]"])


@dataclass(frozen=True)
class Loaded:
    path: Path
    body: dict[str, Any]

    @property
    def label(self) -> str:
        """``Kind/name`` for messages, whatever shape the object has."""
        metadata = self.body.get("metadata")
        metadata = metadata if isinstance(metadata, dict) else {}
        return f"{self.body.get('kind')}/{metadata.get('name') or metadata.get('generateName')}"


@dataclass
class _Unchecked:
    what: str  # "object(s) not checked against KEDA's schema"
    reason: str
    items: list[str] = field(default_factory=list)


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)
    checked: int = 0
    skipped: list[str] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    _unchecked: dict[str, _Unchecked] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.findings

    def skip(self, line: str) -> None:
        """Say once that something was not checked (the same line again adds nothing)."""
        if line not in self.skipped:
            self.skipped.append(line)

    def unchecked(self, name: str, what: str, item: str, reason: str) -> None:
        """``item`` (an object, an overlay) was not checked for ``reason``; one line per
        ``name`` (``keda-schema``) lists them all, at :meth:`close`."""
        group = self._unchecked.setdefault(name, _Unchecked(what, reason))
        group.reason = reason
        if item not in group.items:
            group.items.append(item)

    def close(self) -> None:
        """Turn the grouped skips into their lines; call once, when every check has run."""
        for name, group in self._unchecked.items():
            listed = ", ".join(group.items)
            self.skip(f"{name}: {len(group.items)} {group.what} ({listed}): {group.reason}")
        self._unchecked.clear()

    def human(self) -> str:
        lines = [f.line() for f in self.findings]
        lines += [f"warning: {w.line()}" for w in self.warnings]
        lines += [f"skipped: {s}" for s in self.skipped]
        verdict = "clean" if self.ok else f"{len(self.findings)} finding(s)"
        if self.warnings:
            verdict += f", {len(self.warnings)} warning(s)"
        lines.append(f"rtflow lint: {self.checked} object(s), {verdict}")
        return "\n".join(lines) + "\n"

    def json(self) -> str:
        return (
            json.dumps(
                {
                    "ok": self.ok,
                    "checked": self.checked,
                    "findings": [asdict(f) for f in self.findings],
                    "warnings": [asdict(w) for w in self.warnings],
                    "skipped": self.skipped,
                },
                indent=2,
                sort_keys=True,
            )
            + "\n"
        )
