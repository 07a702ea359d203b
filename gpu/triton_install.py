"""Where a runnable Triton is on this machine, and what its processes need to run.

The ``nvidia-pytriton`` wheel ships a CPU-capable ``tritonserver`` and its Python backend; this
module finds them (or says exactly what to install), refuses numpy 2 (the stub's pybind11
speaks the numpy 1 C API), and prepares what the binary and its Python-backend stub need from
their environment: the stub beside the backend library, the running interpreter's libpython and
``bin`` first on the search paths, the wheel's bundled libraries. Both launchers use it: the
server of :mod:`rtflow.gpu.triton_server` and the in-pod exec of :mod:`rtflow.gpu.triton_exec`.
Standard library only, so importing it stays cheap.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
import sys
import sysconfig
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = [
    "ENV_BINARY",
    "INSTALL_HINT",
    "TritonError",
    "TritonInstall",
    "TritonUnavailable",
    "check_numpy",
    "locate_triton",
    "prepare_backends",
    "python_library_dir",
    "server_env",
]

ENV_BINARY: Final = "RTFLOW_TRITONSERVER"
"""Environment variable naming a ``tritonserver`` binary to use instead of the wheel's."""

INSTALL_HINT: Final = 'pip install "nvidia-pytriton"  (it ships tritonserver and pins numpy<2)'

_STUB_NAME: Final = "triton_python_backend_stub"
_BACKEND_LIB: Final = "libtriton_python.so"


class TritonError(RuntimeError):
    """Base class, so callers can treat every launcher failure alike."""


class TritonUnavailable(TritonError):
    """Raised when this machine cannot run Triton at all, so a test can skip rather than fail.

    The message always says what to install or set, because the usual cause is a missing optional
    dependency, not a bug.
    """


@dataclass(frozen=True)
class TritonInstall:
    """Where the pieces of one Triton installation are, resolved once before starting.

    Attributes:
        binary: the ``tritonserver`` executable.
        backends: the folder holding ``python/libtriton_python.so``.
        stub: the Python-backend stub for the running Python, when it must be placed beside the
            backend library (the wheel keeps one stub per Python version elsewhere); ``None`` when
            ``backends/python`` already holds a usable stub.
        library_dirs: folders of bundled shared libraries that a copied binary can no longer find
            through its ``$ORIGIN`` run path.
        caches: the response-cache plugin folder, passed so that enabling a cache later just works.
    """

    binary: Path
    backends: Path
    stub: Path | None
    library_dirs: tuple[Path, ...]
    caches: Path | None


def _python_version() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def _is_executable_file(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _wheel_root() -> Path:
    """Find the wheel's ``tritonserver`` folder without executing pytriton's ``__init__``.

    ``find_spec`` of a top-level package only reads the import system's metadata, which keeps the
    launcher independent of pytriton's heavy Python API and its version churn.
    """
    try:
        spec = importlib.util.find_spec("pytriton")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable(
            "Triton Inference Server is not installed: the nvidia-pytriton package was not found "
            f"in {sys.executable}'s environment. Install it with: {INSTALL_HINT}; "
            f"or set {ENV_BINARY} to a tritonserver binary."
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
    if not _is_executable_file(root / "bin" / "tritonserver"):
        raise TritonUnavailable(
            f"nvidia-pytriton is installed but {root / 'bin' / 'tritonserver'} is missing or not "
            f"executable (a wheel for another platform?). Reinstall with: {INSTALL_HINT}"
        )
    return root


def locate_triton(binary: str | os.PathLike[str] | None = None) -> TritonInstall:
    """Resolve a usable Triton installation, or explain precisely why there is none.

    Resolution order: the explicit ``binary``, then ``$RTFLOW_TRITONSERVER``, then the installed
    ``nvidia-pytriton`` wheel. Called by tests up front so that a missing component skips cleanly.

    Raises:
        TritonUnavailable: nothing runnable was found; the message names what to install.
    """
    chosen = os.fspath(binary) if binary is not None else os.environ.get(ENV_BINARY) or None
    if chosen is not None:
        source = "binary=" if binary is not None else f"${ENV_BINARY}="
        path = Path(chosen).expanduser()
        if not _is_executable_file(path):
            raise TritonUnavailable(f"{source}{chosen} is not an executable file")
        root = path.resolve().parent.parent
        bin_path = path
    else:
        root = _wheel_root()
        bin_path = root / "bin" / "tritonserver"

    backends = root / "backends"
    if not (backends / "python" / _BACKEND_LIB).is_file():
        raise TritonUnavailable(
            f"no Python backend next to {bin_path} (expected {backends / 'python' / _BACKEND_LIB})"
        )

    version = _python_version()
    stub: Path | None = None
    stubs_dir = root / "python_backend_stubs"
    if stubs_dir.is_dir():
        stub = stubs_dir / version / _STUB_NAME
        if not _is_executable_file(stub):
            shipped = sorted(p.name for p in stubs_dir.iterdir() if (p / _STUB_NAME).is_file())
            raise TritonUnavailable(
                f"the Triton wheel has no Python-backend stub for Python {version} "
                f"(it ships {', '.join(shipped) or 'none'}); run rtflow with one of those"
            )
    elif not _is_executable_file(backends / "python" / _STUB_NAME):
        raise TritonUnavailable(f"no {_STUB_NAME} in {backends / 'python'} or {stubs_dir}")

    # site-packages/pytriton/tritonserver -> site-packages/nvidia_pytriton.libs for a wheel,
    # tritonserver/external_libs for an editable pytriton, lib/ for a classic /opt/tritonserver.
    candidates = (root.parent.parent / "nvidia_pytriton.libs", root / "external_libs", root / "lib")
    library_dirs = tuple(p for p in candidates if p.is_dir())
    caches = root / "caches"
    return TritonInstall(
        binary=bin_path,
        backends=backends,
        stub=stub,
        library_dirs=library_dirs,
        caches=caches if caches.is_dir() else None,
    )


def check_numpy() -> str:
    """Refuse numpy 2 up front, because the stub would otherwise return empty tensors silently.

    The stub's embedded interpreter sees the same environment as this one (see :func:`server_env`),
    so this process's installed numpy is the one the models will get.
    """
    try:
        version = importlib.metadata.version("numpy")
    except importlib.metadata.PackageNotFoundError:
        raise TritonUnavailable(
            "numpy is not installed, but Triton's Python backend imports it; "
            f"install numpy<2 (for example: {INSTALL_HINT})"
        ) from None
    major = version.split(".", 1)[0]
    if not major.isdigit() or int(major) >= 2:
        raise TritonUnavailable(
            f"numpy {version} is installed, but the Triton Python-backend stub in nvidia-pytriton "
            "is built against the numpy 1 C API and returns empty or malformed tensors with "
            'numpy 2; install "numpy<2" (nvidia-pytriton pins it) or pass check_numpy=False'
        )
    return version


def prepend_path(value: str | None, entries: Iterable[str]) -> str:
    parts = [e for e in entries if e]
    if value:
        parts.extend(p for p in value.split(os.pathsep) if p and p not in parts)
    return os.pathsep.join(parts)


def python_library_dir() -> str | None:
    """The running interpreter's ``libpython`` folder, which the stub must load instead of another.

    Without it the dynamic loader takes whatever ``libpython3.X.so.1.0`` the system has (on Debian
    the distribution's 3.X.y, not pyenv's), mixing two builds in one process, or fails outright.
    """
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return None
    libdir = sysconfig.get_config_var("LIBDIR")
    return libdir if isinstance(libdir, str) and os.path.isdir(libdir) else None


def server_env(install: TritonInstall, overrides: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    lib_dirs = [d for d in [python_library_dir()] if d]
    lib_dirs += [os.fspath(d) for d in install.library_dirs]
    env["LD_LIBRARY_PATH"] = prepend_path(env.get("LD_LIBRARY_PATH"), lib_dirs)
    # The stub's embedded Python resolves ``python3`` on PATH to find pyvenv.cfg and thus the
    # environment (with numpy<2) that this process runs in.
    env["PATH"] = prepend_path(env.get("PATH"), [os.path.dirname(sys.executable)])
    if overrides:
        env.update(overrides)
    return env


def _same_file(a: Path, b: Path) -> bool:
    try:
        sa, sb = a.stat(), b.stat()
    except OSError:
        return False
    return sa.st_size == sb.st_size and int(sa.st_mtime) == int(sb.st_mtime)


def prepare_backends(install: TritonInstall, work_dir: Path) -> Path:
    """Assemble a backend folder in which the stub sits beside ``libtriton_python.so``.

    The Python backend launches the stub from its own folder, while the wheel keeps one stub per
    Python version elsewhere; copying into a private folder leaves site-packages untouched and
    lets two servers with different Pythons coexist.
    """
    if install.stub is None:
        return install.backends
    target = work_dir / "backends"
    python_dir = target / "python"
    python_dir.mkdir(parents=True, exist_ok=True)
    sources = [p for p in (install.backends / "python").iterdir() if p.is_file()]
    for src in [*sources, install.stub]:
        dst = python_dir / src.name
        if not _same_file(src, dst):
            shutil.copy2(src, dst)
    for other in install.backends.iterdir():
        link = target / other.name
        if other.is_dir() and other.name != "python" and not link.exists():
            link.symlink_to(other, target_is_directory=True)
    return target
