"""Finding pipelines in a file or module the user names on the command line.

A path is loaded as a module named after the file (``examples/fraud_detection.py`` becomes
``fraud_detection``), with its folder on sys.path, so stage functions get an import path the
stage runtime can use inside the container. Loading runs the module's top level, which only
defines stages and pipelines; no stage function is called.

Because that is all it should do, importing is held to it: a file that calls ``sys.exit()``,
raises, or runs longer than ``RTFLOW_IMPORT_TIMEOUT`` seconds (60 by default: a loop or a
network call at import) fails with one line instead of a traceback, a hang, or an empty
"success"; two pipelines with one name in a file are an error, not the second silently
replacing the first.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from rtflow.errors import LoadError
from rtflow.pipeline import DEFINED, Pipeline

IMPORT_TIMEOUT_ENV = "RTFLOW_IMPORT_TIMEOUT"
DEFAULT_IMPORT_TIMEOUT = 60.0


class _ImportTimedOut(BaseException):
    """Raised into the import by the timer; a BaseException so that the user's own
    ``except Exception`` cannot swallow it."""


def load_pipelines(target: str) -> tuple[str, list[Pipeline]]:
    """``PATH_OR_MODULE[:ATTR]`` -> (source name, pipelines sorted by name)."""
    location, _, attribute = target.partition(":")
    defined_before = len(DEFINED)
    if _looks_like_path(location):
        namespace, source = _load_file(Path(location)), Path(location).stem
    else:
        namespace, source = _import(location), location
    _check_unique_names(target, DEFINED[defined_before:], namespace)
    if attribute:
        if attribute not in namespace:
            raise LoadError(f"{target}: {source} has no attribute {attribute!r}")
        found = namespace[attribute]
        if not isinstance(found, Pipeline):
            raise LoadError(
                f"{target}: {attribute!r} is a {type(found).__name__}, not a pipeline; "
                "decorate a function with @rtflow.pipeline(...)"
            )
        return source, [found]
    pipelines = {id(v): v for v in namespace.values() if isinstance(v, Pipeline)}
    if not pipelines:
        raise LoadError(
            f"{target}: defines no pipeline; decorate a function with @rtflow.pipeline(...)"
        )
    return source, sorted(pipelines.values(), key=lambda p: p.name)


def _check_unique_names(target: str, defined: list[Pipeline], namespace: dict[str, object]) -> None:
    """Two pipelines of this file with one name: the second would replace the first."""
    module = namespace.get("__name__")
    seen: dict[str, Pipeline] = {}
    for found in defined:
        if getattr(found.function, "__module__", None) != module:
            continue  # defined by a module this one imports
        if found.name in seen:
            first = seen[found.name].function.__name__
            raise LoadError(
                f"{target}: two pipelines are named {found.name!r} (functions {first!r} and "
                f"{found.function.__name__!r}); give each its own name= in @rtflow.pipeline"
            )
        seen[found.name] = found


def import_timeout() -> float:
    raw = os.environ.get(IMPORT_TIMEOUT_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_IMPORT_TIMEOUT
    except ValueError:
        raise LoadError(f"{IMPORT_TIMEOUT_ENV}={raw!r} is not a number of seconds") from None


@contextlib.contextmanager
def _bounded() -> Iterator[None]:
    """Interrupt the import after the timeout (a timer signal; only the main thread can take
    one, so elsewhere the import is unbounded)."""
    seconds = import_timeout()
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(signum: int, frame: FrameType | None) -> None:
        raise _ImportTimedOut

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _import_failure(what: str, exc: BaseException) -> LoadError:
    """One line for whatever importing the user's code raised."""
    if isinstance(exc, _ImportTimedOut):
        return LoadError(
            f"{what}: importing it took more than {import_timeout():g} s; a pipeline file "
            "should only define stages and pipelines (move slow work into stage functions), "
            f"or raise {IMPORT_TIMEOUT_ENV}"
        )
    if isinstance(exc, SystemExit):
        return LoadError(
            f"{what}: it calls sys.exit({exc.code!r}) while being imported; put script code "
            'under `if __name__ == "__main__":`'
        )
    return LoadError(f"{what}: importing it raised {type(exc).__name__}: {exc}")


def _looks_like_path(location: str) -> bool:
    return location.endswith(".py") or "/" in location or Path(location).is_file()


def _load_file(path: Path) -> dict[str, object]:
    if not path.is_file():
        raise LoadError(f"{path}: no such file")
    name = path.stem
    if not name.isidentifier():
        raise LoadError(
            f"{path}: {name!r} is not a Python module name, so the stage runtime could not "
            f"import it; rename the file, e.g. {name.replace('-', '_')}.py"
        )
    folder = str(path.resolve().parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path}: cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        with _bounded():
            spec.loader.exec_module(module)
    except SyntaxError as exc:
        _restore(name, previous)
        raise LoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except KeyboardInterrupt:
        _restore(name, previous)
        raise
    except BaseException as exc:
        _restore(name, previous)
        raise _import_failure(str(path), exc) from None
    return vars(module)


def _restore(name: str, previous: object) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous  # type: ignore[assignment]


def _import(name: str) -> dict[str, object]:
    try:
        with _bounded():
            return vars(importlib.import_module(name))
    except ModuleNotFoundError as exc:
        raise LoadError(f"{name}: no such file or module ({exc})") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise _import_failure(name, exc) from None
