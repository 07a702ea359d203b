"""``python -m rtflow.stages run MODULE:FUNCTION --outputs-dir DIR --input name=value ...``: one
function stage, as a workflow-plane template runs it; ``python -m rtflow.stages stream TARGET``: a
stream-plane worker, as a stream Deployment (and ``rtflow run --local``) runs it."""

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
    stream = commands.add_parser(
        "stream", help="run a stream-plane worker: consume, run the hot path, produce exactly once"
    )
    from rtflow.stages.stream.launcher import add_worker_arguments, serve

    add_worker_arguments(stream)
    args = parser.parse_args(argv)
    if args.command == "stream":
        return serve(args)
    return runtime.run(args.function, args.outputs_dir, args.input)


if __name__ == "__main__":
    sys.exit(main())
