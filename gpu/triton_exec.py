"""``tritonserver`` for a cluster without GPUs: the wheel's binary, set up, in place of itself.

A generated Triton Deployment runs ``tritonserver ARGS`` as NVIDIA's image does. A CPU-only
image (a kind cluster, a dev cluster; ``e2e/images/tritonserver-cpu.Dockerfile``) has no
``/opt/tritonserver``: it has the ``nvidia-pytriton`` wheel, whose binary needs the launcher's
set-up (backend folder with the stub beside the library, ``LD_LIBRARY_PATH``, numpy<2). This
module does that set-up and then replaces itself with the server (``execve``), so the container
runs Triton as PID 1's only child, signals and exit code untouched::

    python -m rtflow.gpu.triton_exec ARGS...    # what the image's `tritonserver` script runs

The backend folder is assembled under ``$RTFLOW_TRITON_WORK_DIR`` (default: the temp folder,
the pod's scratch volume), since the root filesystem is read-only.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from rtflow.gpu.triton_install import (
    TritonError,
    TritonInstall,
    check_numpy,
    locate_triton,
    prepare_backends,
    server_env,
)

WORK_DIR_ENV = "RTFLOW_TRITON_WORK_DIR"
# A CPU build has no CUDA: Triton's default pinned and CUDA pools would fail to allocate.
CPU_ARGS = ("--pinned-memory-pool-byte-size=0", "--cuda-memory-pool-byte-size=0:0")


def command(install: TritonInstall, backends: Path, args: Sequence[str]) -> list[str]:
    """The server's command line: the Deployment's arguments after the wheel's set-up."""
    given = {arg.split("=", 1)[0] for arg in args}
    extra = [arg for arg in CPU_ARGS if arg.split("=", 1)[0] not in given]
    if "--backend-directory" not in given:
        extra.insert(0, f"--backend-directory={backends}")
    if install.caches is not None and "--cache-directory" not in given:
        extra.append(f"--cache-directory={install.caches}")
    return [os.fspath(install.binary), *extra, *args]


def main(argv: Sequence[str] | None = None) -> NoReturn:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        install = locate_triton()
        check_numpy()
        work_dir = Path(os.environ.get(WORK_DIR_ENV) or tempfile.gettempdir()) / "rtflow-triton"
        backends = prepare_backends(install, work_dir)
    except (TritonError, OSError) as error:
        print(f"tritonserver (rtflow CPU image): {error}", file=sys.stderr)
        sys.exit(2)
    argv_out = command(install, backends, args)
    os.execve(argv_out[0], argv_out, server_env(install, None))


if __name__ == "__main__":
    main()
