"""Finding pipelines in a file or module the user names on the command line.

A path is loaded as a module named after the file (``examples/fraud_detection.py`` becomes
``fraud_detection``), with its folder on sys.path, so stage functions get an import path the
stage runtime can use inside the container. Loading runs the module's top level, which only
defines stages and pipelines; no stage function is called.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from rtflow.errors import LoadError
from rtflow.pipeline import Pipeline


def load_pipelines(target: str) -> tuple[str, list[Pipeline]]:
    """``PATH_OR_MODULE[:ATTR]`` -> (source name, pipelines sorted by name)."""
    location, _, attribute = target.partition(":")
    if _looks_like_path(location):
        namespace, source = _load_file(Path(location)), Path(location).stem
    else:
        namespace, source = _import(location), location
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
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        _restore(name, previous)
        raise LoadError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from exc
    except Exception as exc:
        _restore(name, previous)
        raise LoadError(f"{path}: importing it raised {type(exc).__name__}: {exc}") from exc
    return vars(module)


def _restore(name: str, previous: object) -> None:
    if previous is None:
        sys.modules.pop(name, None)
    else:
        sys.modules[name] = previous  # type: ignore[assignment]


def _import(name: str) -> dict[str, object]:
    try:
        return vars(importlib.import_module(name))
    except ModuleNotFoundError as exc:
        raise LoadError(f"{name}: no such file or module ({exc})") from exc
    except Exception as exc:
        raise LoadError(f"{name}: importing it raised {type(exc).__name__}: {exc}") from exc
