"""A model's ``config.pbtxt`` and the model-repository layout.

``config.pbtxt`` is Triton's ``ModelConfig`` in protobuf text format; it is rendered with jinja2
from ``templates/config.pbtxt.j2`` (not YAML, so not built as Kubernetes objects are). The output
is deterministic: fields in a fixed order, every value from the validated model.

The layout is Triton's::

    <model>/config.pbtxt
    <model>/<version>/...   (the files of each version folder the user points to)
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import jinja2

from rtflow.errors import DefinitionError
from rtflow.gpu.models import TritonModel, cpu_variant

__all__ = [
    "CONFIG_FILE",
    "TEMPLATE",
    "model_files",
    "pb_string",
    "render_config",
    "repository_layout",
    "write_repository",
]

CONFIG_FILE: Final = "config.pbtxt"
TEMPLATE: Final = "config.pbtxt.j2"
_TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
_SKIPPED: Final = frozenset({"__pycache__", ".ipynb_checkpoints"})


def pb_string(value: str) -> str:
    """A protobuf text-format string literal: double quotes, C escapes, UTF-8 bytes in octal."""
    out = ['"']
    for byte in value.encode("utf-8"):
        char = chr(byte)
        if char == "\\":
            out.append("\\\\")
        elif char == '"':
            out.append('\\"')
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    out.append('"')
    return "".join(out)


def _pb_list(values: Sequence[int]) -> str:
    return "[ " + ", ".join(str(int(v)) for v in values) + " ]"


def _pb_bool(value: bool) -> str:
    return "true" if value else "false"


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pb"] = pb_string
    env.filters["pblist"] = _pb_list
    env.filters["pbbool"] = _pb_bool
    return env


def render_config(model: TritonModel, *, cpu_only: bool = False) -> str:
    """The model's ``config.pbtxt`` text.

    ``cpu_only`` renders :func:`~rtflow.gpu.models.cpu_variant` (GPU instance groups moved to
    CPU) for a local Triton on a machine without GPUs.
    """
    chosen = cpu_variant(model) if cpu_only else model
    return _environment().get_template(TEMPLATE).render(model=chosen)


def _unique(models: Iterable[TritonModel]) -> list[TritonModel]:
    chosen: dict[str, TritonModel] = {}
    for model in models:
        if model.name in chosen and chosen[model.name] != model:
            raise DefinitionError(
                f"two different models are named {model.name!r} in one model repository",
                fix="give each model its own name",
                field="models",
            )
        chosen[model.name] = model
    return [chosen[name] for name in sorted(chosen)]


def _version_source(model: TritonModel, source: str, number: int, base: Path | None) -> Path:
    folder = Path(source)
    if base is not None and not folder.is_absolute():
        folder = base / folder
    if not folder.is_dir():
        fix = "point versions to an existing folder holding that version's files"
        if base is None and not Path(source).is_absolute():
            # read from the current folder: no module holds the model as a module-level name
            fix = (
                "a relative version folder is read beside the module that holds the model as a "
                "module-level name, and none does (a model made inside a function?): declare "
                f"it at module level, or give an absolute folder, e.g. Path(__file__).parent / "
                f"{source!r}"
            )
        raise DefinitionError(
            f"model {model.name!r}: version {number} folder {os.fspath(folder)!r} does not exist",
            fix=fix,
            field="versions",
        )
    return folder


def _version_files(folder: Path) -> list[Path]:
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in _SKIPPED or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file():
            files.append(path)
    return files


def _generated_files(model: TritonModel) -> list[tuple[str, str]]:
    """``(relative path, text)`` of the files rtflow generates in each version folder (the
    vLLM backend's ``model.json``): every declared version, else version 1."""
    numbers = [v.number for v in model.versions] or [1]
    return [(f"{n}/{name}", text) for n in numbers for name, text in model.files]


def model_files(model: TritonModel) -> list[tuple[str, str]]:
    """What compile writes for ``model`` under ``model-repository/``: ``<model>/config.pbtxt``
    and the files rtflow generates in its version folders, sorted by path."""
    files = [(f"{model.name}/{CONFIG_FILE}", render_config(model))]
    files += [(f"{model.name}/{path}", text) for path, text in _generated_files(model)]
    return sorted(files)


def repository_layout(
    models: Iterable[TritonModel],
    *,
    base: str | os.PathLike[str] | None = None,
    cpu_only: bool = False,
) -> dict[str, str]:
    """The model repository as ``{relative path: text}``, sorted by path.

    Every model gets ``<model>/config.pbtxt``; every version folder the user pointed to
    (``versions={1: "dir"}``) gets its files as ``<model>/<version>/<file>`` (text files only:
    use :func:`write_repository` for binary model files such as ``model.onnx``). ``base`` resolves
    relative version folders.
    """
    root = Path(base) if base is not None else None
    layout: dict[str, str] = {}
    for model in _unique(models):
        layout[f"{model.name}/{CONFIG_FILE}"] = render_config(model, cpu_only=cpu_only)
        for relative, text in _generated_files(model):
            layout[f"{model.name}/{relative}"] = text
        for version in model.versions:
            if version.source is None:
                continue
            folder = _version_source(model, version.source, version.number, root)
            for path in _version_files(folder):
                relative = path.relative_to(folder).as_posix()
                try:
                    text = path.read_text(encoding="utf-8")
                except UnicodeDecodeError:
                    raise DefinitionError(
                        f"model {model.name!r}: version {version.number} file {relative!r} is "
                        "binary, so it has no text layout",
                        fix="use rtflow.gpu.config.write_repository to copy binary model files",
                        field="versions",
                    ) from None
                layout[f"{model.name}/{version.number}/{relative}"] = text
    return dict(sorted(layout.items()))


def write_repository(
    models: Iterable[TritonModel],
    destination: str | os.PathLike[str],
    *,
    base: str | os.PathLike[str] | None = None,
    cpu_only: bool = False,
) -> Path:
    """Write the model repository into ``destination`` (created if missing) and return it.

    Configs are rendered; version folders are copied byte for byte (binary model files too).
    A model folder already in ``destination`` is replaced, so the result is exactly the layout.
    """
    root = Path(base) if base is not None else None
    target = Path(destination)
    target.mkdir(parents=True, exist_ok=True)
    for model in _unique(models):
        folder = target / model.name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
        (folder / CONFIG_FILE).write_text(render_config(model, cpu_only=cpu_only), encoding="utf-8")
        for relative, text in _generated_files(model):
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_text(text, encoding="utf-8")
        for version in model.versions:
            if version.source is None:
                continue
            source = _version_source(model, version.source, version.number, root)
            destination_version = folder / str(version.number)
            for path in _version_files(source):
                copy = destination_version / path.relative_to(source)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
            destination_version.mkdir(exist_ok=True)
    return target
