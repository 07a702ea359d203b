"""docs/cli.md is generated from the parser (tools/cli_reference.py) and must match it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from compiled import ROOT


@pytest.mark.skipif(
    sys.version_info[:2] != (3, 11),
    reason="argparse's help layout changes between Python versions; the reference is 3.11's",
)
def test_the_cli_reference_is_generated_from_the_current_parser() -> None:
    result = subprocess.run(
        [sys.executable, "tools/cli_reference.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def test_the_reference_has_every_subcommand_and_option() -> None:
    """Not only equal to the generator's output: the generator itself covers every option."""
    from rtflow.cli.parser import build_parser

    text = (ROOT / "docs" / "cli.md").read_text()
    parser = build_parser()
    (commands,) = [a for a in parser._actions if hasattr(a, "choices") and a.dest == "command"]
    for name, sub in commands.choices.items():
        assert f"## rtflow {name}\n" in text
        for action in sub._actions:
            for flag in action.option_strings:
                if action.help != "==SUPPRESS==":
                    assert flag in text, (name, flag)
