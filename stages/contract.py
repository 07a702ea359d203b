"""The contract between a compiled template and the stage runtime inside its container.

The generator writes templates from these constants and the runtime reads its arguments by the
same ones, so the two cannot drift apart: change the contract here and both follow.
"""

from __future__ import annotations

from collections.abc import Sequence

#: The runtime entrypoint every Python-function stage image runs.
COMMAND: tuple[str, ...] = ("python", "-m", "rtflow.stages")
#: Writable scratch space; the root filesystem is read-only, so this is an emptyDir volume.
SCRATCH_DIR = "/tmp"
#: Where a stage writes output ``<name>`` for Argo to read as an output parameter.
OUTPUTS_DIR = "/tmp/rtflow/outputs"
#: Where a stage's credentials (``rtflow.Secret``) are mounted, read-only: one file per Secret
#: key, ``<SECRETS_DIR>/<secret>/<key>``, its path in the variable ``<ENV>`` + ``FILE_SUFFIX``.
SECRETS_DIR = "/var/run/secrets/rtflow"
FILE_SUFFIX = "_FILE"

#: Exit codes. Argo's retry expression retries everything except a bad input: the same input
#: would fail the same way again.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 65  # EX_DATAERR
RETRY_EXPRESSION = f"asInt(lastRetry.exitCode) != {EXIT_BAD_INPUT}"


def output_path(name: str) -> str:
    return f"{OUTPUTS_DIR}/{name}"


def secret_path(secret: str, key: str) -> str:
    """The file a stage reads the Secret's key from (its folder is mounted at SECRETS_DIR)."""
    return f"{SECRETS_DIR}/{secret}/{key}"


def file_variable(name: str) -> str:
    """The variable holding the path of credential ``name`` given as a file."""
    return f"{name}{FILE_SUFFIX}"


def run_args(function: str, inputs: Sequence[str]) -> list[str]:
    """Arguments for ``COMMAND``: the function to import and one ``--input name=value`` each.

    The value is Argo's ``{{inputs.parameters.<name>}}``; the runtime splits at the first '='
    and decodes the text by the function's own annotation.
    """
    args = ["run", function, "--outputs-dir", OUTPUTS_DIR]
    for name in inputs:
        args += ["--input", f"{name}={{{{inputs.parameters.{name}}}}}"]
    return args
