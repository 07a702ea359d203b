"""``python -m rtflow.stages run MODULE:FUNCTION --outputs-dir DIR --input name=value ...``"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rtflow.stages import contract, runtime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rtflow.stages")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one function stage as a compiled template does")
    run.add_argument("function", metavar="MODULE:FUNCTION")
    run.add_argument("--outputs-dir", type=Path, default=Path(contract.OUTPUTS_DIR))
    run.add_argument("--input", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    return runtime.run(args.function, args.outputs_dir, args.input)


if __name__ == "__main__":
    sys.exit(main())
