"""The fenced code blocks of README.md and docs/*.md, with what each needs to run.

A block is marked by the HTML comment on the line before its fence (blank lines between are not
allowed, so a marker cannot drift away from its block):

* ``<!-- docs-test: skip REASON -->``: not run; the test is skipped with REASON (a cluster,
  Docker, a registry).
* ``<!-- docs-test: fresh-venv [needs=java] -->``: run verbatim in a copy of the repository with
  nothing installed: the block makes (or is given) its own virtualenv (slow: pip installs).
* ``<!-- docs-test: file=NAME -->``: a Python block the reader is told to save as NAME; it is
  written there before every later block of the same page runs, and run itself.
* ``<!-- docs-test: exit=N -->``: the block is expected to exit N (a failure shown on purpose).
* ``<!-- docs-test: needs=triton|java -->``: needs a real component (skips, or fails in CI).
* ``<!-- test-command ... -->``: the README's test command, which CI runs itself.

``sh``/``bash`` and ``python`` blocks run; ``text``, ``yaml``, ``json``, ``mermaid`` and
``dockerfile`` blocks are shown, not run. A block with another language or none is an error (it
would otherwise be skipped without anyone noticing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = {"sh": "sh", "bash": "sh", "python": "python"}
SHOWN = {"text", "yaml", "json", "mermaid", "dockerfile", "toml"}
_MARKER = re.compile(r"^<!--\s*(docs-test:|test-command)(.*?)-->\s*$")
_FENCE = re.compile(r"^```(\S*)\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    skip: str | None = None
    fresh_venv: bool = False
    file: str | None = None
    exit: int = 0
    needs: tuple[str, ...] = ()
    options: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT).as_posix()}:{self.line}"

    @property
    def kind(self) -> str:
        return RUN.get(self.language, "shown")


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _marker(text: str) -> tuple[str | None, bool, str | None, int, tuple[str, ...]]:
    """(skip reason, fresh venv, file, exit code, needs) of one marker comment."""
    match = _MARKER.match(text.strip())
    assert match is not None
    if match[1] == "test-command":
        return "the README's test command: CI (.ci/run) runs it itself", False, None, 0, ()
    words = match[2].strip()
    if words.startswith("skip"):
        reason = words[len("skip") :].strip()
        if not reason:
            raise ValueError(f"a docs-test skip needs a reason: {text!r}")
        return reason, False, None, 0, ()
    fresh, file, code, needs = False, None, 0, ()
    for word in words.split():
        key, _, value = word.partition("=")
        if key == "fresh-venv":
            fresh = True
        elif key == "file" and value:
            file = value
        elif key == "exit" and value.isdigit():
            code = int(value)
        elif key == "needs" and value:
            needs = tuple(value.split(","))
        else:
            raise ValueError(f"unknown docs-test marker word {word!r} in {text!r}")
    return None, fresh, file, code, needs


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        start = index
        language = fence[1]
        end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"{page}:{start + 1}: a fence that is never closed")
        code = "\n".join(lines[start + 1 : end]) + "\n"
        previous = lines[start - 1] if start > 0 else ""
        skip, fresh, file, exit_code, needs = (None, False, None, 0, ())
        if _MARKER.match(previous.strip()):
            skip, fresh, file, exit_code, needs = _marker(previous)
        found.append(Block(page, start + 1, language, code, skip, fresh, file, exit_code, needs))
        index = end + 1
    return found


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]
