# PYTHON_ARGCOMPLETE_OK
"""The ``rtflow`` command.

Exit codes: 0 done; 1 findings (``compile --check`` found the folder stale, lint findings, a
failed event or workflow); 2 the input is wrong (usage, a pipeline definition, a file that does
not load, a run that cannot start); 130 interrupted (Ctrl-C). An error is one line on stderr,
without a traceback unless ``--debug`` asks for it (before or after the subcommand).

The parser is :mod:`.parser` (every subcommand's options, and the conventions they share), the
handlers :mod:`.commands` and :mod:`.run`; docs/cli.md is generated from the parser by
``tools/cli_reference.py``.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence

from rtflow.cli.commands import (
    EXIT_FINDINGS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    compile_command,
)
from rtflow.cli.parser import build_parser
from rtflow.errors import RtflowError

__all__ = [
    "EXIT_FINDINGS",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "batch_gc",
    "build_parser",
    "compile_command",
    "main",
]


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_OK)


def batch_gc() -> None:
    """A compile is a short batch run whose objects all live until it ends, so the cyclic GC
    would only re-scan an ever larger live graph: measured, it more than doubles the time of a
    10,000-stage compile (BENCHMARKS.md). Reference counting still frees everything acyclic."""
    gc.disable()


def _completion(args: object) -> int:
    from argcomplete.shell_integration import shellcode

    shell = getattr(args, "shell", "bash")
    sys.stdout.write(shellcode(["rtflow"], shell=shell))
    return EXIT_OK


def _handler(command: str) -> Callable[..., int]:
    from rtflow.cli import commands

    if command == "run":
        from rtflow.cli.run import cmd_run

        return cmd_run
    if command == "completion":
        return _completion
    return {
        "compile": commands.cmd_compile,
        "graph": commands.cmd_graph,
        "lint": commands.cmd_lint,
        "stage-dockerfile": commands.cmd_stage_dockerfile,
        "submit": commands.cmd_submit,
    }[command]


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    if next((a for a in given if not a.startswith("-")), None) == "run":
        # Until the local run installs its own handlers (drain, commit, stop the children), a
        # SIGTERM finds nothing started and nothing read: a clean exit, not 143.
        signal.signal(signal.SIGTERM, _exit_cleanly)
    parser = build_parser()
    if "_ARGCOMPLETE" in os.environ:  # the shell asks for completions (rtflow completion)
        import argcomplete

        argcomplete.autocomplete(parser)
    try:
        args = parser.parse_args(given)
    except KeyboardInterrupt:
        print("rtflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.command != "run":
        batch_gc()
    debug = bool(getattr(args, "debug", False))
    try:
        return _handler(args.command)(args)
    except RtflowError as error:
        if debug:
            traceback.print_exc()
        print(f"rtflow: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # pragma: no cover - `rtflow compile -o - | head`
        return EXIT_OK
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print("rtflow: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
