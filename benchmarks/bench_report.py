"""BENCHMARKS.md holds one section per benchmark; each benchmark rewrites only its own."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def replace_section(heading: str, section: str, path: Path = BENCHMARKS) -> None:
    """Put ``section`` where the section starting with ``heading`` is (or at the end), leaving
    every other section as it is. ``section`` starts with its own ``## `` heading line."""
    existing = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    body = section.rstrip("\n") + "\n"
    start = existing.find(heading)
    if start == -1:
        text = existing.rstrip("\n") + "\n\n" + body
    else:
        end = existing.find("\n## ", start + 1)
        text = existing[:start] + body + ("\n" + existing[end + 1 :] if end != -1 else "")
    path.write_text(text, encoding="utf-8")
