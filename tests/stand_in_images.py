"""Stand-ins for the programs of the fraud example's two user images (``/card-actions`` of
card-actions, ``/notifier`` of notifier), which are not on this machine: the pod runner starts
this instead, with the program's name first and the container's arguments after it. It prints
one JSON line (the container's log): the program, its arguments, and the credential files its
``*_FILE`` variables point at (Argo's own ``ARGO_*`` aside), each with whether it was read."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    program, *args = argv
    files = {
        name: Path(path).is_file() and bool(Path(path).read_text())
        for name, path in sorted(os.environ.items())
        if name.endswith("_FILE") and not name.startswith("ARGO_")
    }
    print(json.dumps({"program": program, "args": args, "credential_files": files}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
