"""Read manifest files for ``rtflow lint``: any file, any size, never a traceback.

Lint reads what people and tools hand it, so every way a file can be bad ends as one line that
names the file and the reason (:class:`Unreadable`), and lint goes on with the other files:

* not UTF-8 (Latin-1, binary): YAML is Unicode; UTF-8, or UTF-16 with a byte order mark;
* larger than :data:`MAX_FILE_MB` MiB (``$RTFLOW_LINT_MAX_FILE_MB`` changes it): a manifest file
  is rarely over a few MB (the API server takes objects up to about 1.5 MB), and a limit keeps
  a stray dump from costing minutes. The size is checked before reading, or while reading a
  pipe, so an oversize file costs nothing;
* nested deeper than libyaml's limit (1,000 levels; ``[[[[...`` 100,000 deep): a YAML error,
  not a RecursionError from the pure-Python parser, which is also caught when libyaml is
  absent;
* aliases that expand beyond :data:`MAX_EXPANDED_NODES` nodes (a "billion laughs" file): every
  check walks the expanded tree, so it would never finish;
* not YAML at all, or a value YAML cannot construct (a date like 2024-13-45).

Parsing uses libyaml (``yaml.CSafeLoader``), about ten times faster than the pure-Python loader
(which is used, with the same results, when PyYAML was built without libyaml). The loader also
reads what kustomize prints: kustomize writes YAML 1.2, where a bare ``=`` (a Sensor filter's
comparator) is the string "="; YAML 1.1 reads it as the obsolete ``!!value`` type, which PyYAML
cannot construct, so it is constructed as the string here.

Paths: a folder is walked for ``*.yaml`` and ``*.yml`` (not following symbolic links to
folders, which could loop); a file given by name is read whatever it is (``/dev/stdin``, a pipe
from ``<(kubectl kustomize ...)``). In a folder, a ``*.yaml`` that is not a regular file (a
FIFO would block lint forever) is not read and is reported as such.
"""

from __future__ import annotations

import codecs
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MAX_FILE_MB = 32
MAX_FILE_ENV = "RTFLOW_LINT_MAX_FILE_MB"
MAX_EXPANDED_NODES = 1_000_000
SUFFIXES = (".yaml", ".yml")
HAS_LIBYAML = bool(getattr(yaml, "__with_libyaml__", False))
# An alias (``*name``) where YAML allows one: after a separator, at a line's start or after "- ".
_ALIAS = re.compile(rb"(?:^|[\s\[\{,:-])\*[^\s,\[\]\{\}]", re.MULTILINE)

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_MERGE = "tag:yaml.org,2002:merge"
_RESOLVED: dict[str, str] = {}  # a plain scalar's text -> its implicit tag
_RESOLVED_LENGTH = 64
_RESOLVED_SIZE = 100_000


class _ManifestReading(yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """What :data:`ManifestLoader` adds to PyYAML's safe loader (libyaml's when present): it
    reads kustomize's bare ``=``, and builds plain maps and lists without PyYAML's per-node
    generators.

    With libyaml parsing, constructing the objects in Python was half of the load time; most
    nodes of a manifest are plain strings, maps and lists, built here in one loop (no recursion,
    so depth costs nothing). Any other node (an int, a date, a merge key ``<<``, a set, a tag
    PyYAML refuses) goes to PyYAML's own constructor, so every value and every error is
    PyYAML's (tests/test_lint_loading.py compares both on a corpus of odd YAML).
    """

    def resolve(self, kind: type[yaml.Node], value: Any, implicit: Any) -> Any:
        """The tag of a node, as PyYAML resolves it; a plain scalar's depends on its text
        only, and manifests repeat the same texts (keys, "true", "IfNotPresent"), so it is
        remembered (short texts, a bounded number)."""
        resolve: Any = super().resolve  # untyped in PyYAML's stubs
        if kind is yaml.ScalarNode and implicit[0] and len(value) <= _RESOLVED_LENGTH:
            tag = _RESOLVED.get(value)
            if tag is None:
                if len(_RESOLVED) >= _RESOLVED_SIZE:
                    _RESOLVED.clear()
                tag = _RESOLVED[value] = resolve(kind, value, implicit)
            return tag
        return resolve(kind, value, implicit)

    def construct_document(self, node: yaml.Node) -> Any:
        made: dict[int, Any] = {}  # id(node) -> its object: an anchored node is one object
        pending: list[tuple[yaml.Node, Any]] = []

        def build(node: yaml.Node) -> Any:
            key = id(node)
            if key in made:
                return made[key]
            tag = node.tag
            if tag == _STR and isinstance(node, yaml.ScalarNode):
                return node.value
            if tag == _SEQ and isinstance(node, yaml.SequenceNode):
                made[key] = []
            elif (
                tag == _MAP
                and isinstance(node, yaml.MappingNode)
                and all(isinstance(k, yaml.ScalarNode) and k.tag != _MERGE for k, _ in node.value)
            ):
                made[key] = {}
            else:
                made[key] = self.construct_object(node, deep=True)
                return made[key]
            pending.append((node, made[key]))
            return made[key]

        data = build(node)
        while pending:
            parent, built = pending.pop()
            if isinstance(built, list):
                built.extend(build(child) for child in parent.value)
            else:
                for key_node, value_node in parent.value:
                    built[build(key_node)] = build(value_node)
        state: Any = self  # PyYAML's constructor state, untyped in its stubs
        while state.state_generators:  # as PyYAML's own construct_document ends
            generators: list[Any] = state.state_generators
            state.state_generators = []
            for generator in generators:
                for _ in generator:
                    pass
        state.constructed_objects = {}
        state.recursive_objects = {}
        state.deep_construct = False
        return data


def _value_as_string(loader: Any, node: yaml.Node) -> str:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, f"expected a scalar, found {type(node).__name__}", node.start_mark
        )
    return str(loader.construct_scalar(node))


def loader_for(base: type[Any]) -> type[Any]:
    """The manifest loader over one of PyYAML's safe loaders (``yaml.CSafeLoader``, or the
    pure-Python ``yaml.SafeLoader``)."""
    loader: type[Any] = type("ManifestLoader", (_ManifestReading, base), {})
    loader.add_constructor("tag:yaml.org,2002:value", _value_as_string)
    return loader


ManifestLoader = loader_for(yaml.CSafeLoader if HAS_LIBYAML else yaml.SafeLoader)


class UsageError(Exception):
    """What the caller asked for cannot be linted (no such path, nothing to lint): exit 2."""


class Unreadable(Exception):
    """A file lint cannot read as YAML; the message is one line: why, and what to do."""


@dataclass(frozen=True)
class Found:
    """The files to read, and the paths found but not read (each with the reason)."""

    files: tuple[Path, ...]
    skipped: tuple[tuple[Path, str], ...]


def max_file_bytes() -> int:
    """The size limit in bytes: ``$RTFLOW_LINT_MAX_FILE_MB`` MiB, else :data:`MAX_FILE_MB`."""
    given = os.environ.get(MAX_FILE_ENV, "").strip()
    try:
        megabytes = float(given) if given else float(MAX_FILE_MB)
    except ValueError:
        raise UsageError(f"{MAX_FILE_ENV}={given!r} is not a number of MiB") from None
    return max(0, int(megabytes * 1024 * 1024))


def find_files(paths: Sequence[str | Path]) -> Found:
    """The manifest files under ``paths`` (see the module docstring), sorted per folder.

    Raises :class:`UsageError` for a path that does not exist.
    """
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            for folder, subfolders, names in os.walk(path):
                subfolders.sort()
                for name in sorted(names):
                    if not name.endswith(SUFFIXES):
                        continue
                    file = Path(folder) / name
                    try:
                        mode = file.stat().st_mode
                    except OSError as exc:
                        skipped.append((file, f"cannot be read: {exc.strerror or exc}"))
                        continue
                    if stat.S_ISREG(mode):
                        files.append(file)
                    else:
                        skipped.append(
                            (
                                file,
                                "not a regular file (a FIFO or device), so not read from a "
                                "folder; give its path on its own to read it",
                            )
                        )
        elif os.path.exists(path):
            files.append(path)  # a file, a device (/dev/null), a FIFO: read what it gives
        else:
            raise UsageError(f"{path}: no such file or folder")
    return Found(tuple(_once(files)), tuple(skipped))


def _once(files: Sequence[Path]) -> list[Path]:
    """Each file once, however often the paths name it (a folder and a file in it): read twice,
    its objects would be "defined twice"."""
    seen: set[Path] = set()
    kept = []
    for file in files:
        try:
            key = file.resolve()
        except OSError:
            key = file
        if key not in seen:
            seen.add(key)
            kept.append(file)
    return kept


def _read_bytes(path: Path, limit: int) -> bytes:
    limit_text = f"the {limit / (1024 * 1024):g} MiB limit of lint"
    advice = f"split it, or raise {MAX_FILE_ENV}"
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > limit:
                raise Unreadable(f"{info.st_size} bytes, over {limit_text}; {advice}")
            data = handle.read(limit + 1)
    except OSError as exc:
        raise Unreadable(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise Unreadable(f"over {limit_text}; {advice}")
    return data


def _text(data: bytes) -> str:
    """The file as text: UTF-16 when it starts with that byte order mark, else UTF-8."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise Unreadable(f"not valid UTF-16 (at byte {exc.start}); save it as UTF-8") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        byte = data[exc.start]
        if b"\x00" in data[:8192]:
            raise Unreadable("a binary file (it holds NUL bytes), not YAML") from None
        line = data.count(b"\n", 0, exc.start) + 1
        raise Unreadable(
            f"not UTF-8 text (byte 0x{byte:02x} on line {line}; Latin-1?): "
            "YAML must be UTF-8, save it as UTF-8"
        ) from None


def one_line(error: BaseException) -> str:
    """A YAML error (whose text spans lines, with a snippet) as one line: what, and where."""
    if isinstance(error, yaml.MarkedYAMLError):
        said = "; ".join(str(p) for p in (error.context, error.problem) if p)
        mark = error.problem_mark or error.context_mark
        if mark is not None:
            said += f" (line {mark.line + 1}, column {mark.column + 1})"
        text = said or str(error)
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


class _Recursive(Exception):
    """A node that contains itself (``&a [*a]``)."""


def expanded_nodes(document: Any, limit: int = MAX_EXPANDED_NODES) -> int:
    """How many nodes ``document`` has once aliases are expanded, counting up to just past
    ``limit``. A shared node (an alias) counts each time it is reached, but is walked once:
    its count is remembered, so a billion-laughs file costs its size, not its expansion.

    Raises :class:`_Recursive` for a node that contains itself.
    """
    counted: dict[int, int] = {}
    open_nodes: set[int] = set()
    # Post-order without recursion (libyaml allows 1,000 levels): (node, children counted?)
    stack: list[tuple[Any, bool]] = [(document, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = list(node.values()) if isinstance(node, dict) else node
        if done:
            total = 1
            for child in children:
                total += counted.get(id(child), 1)
                if total > limit:
                    break
            counted[key] = min(total, limit + 1)
            open_nodes.discard(key)
            continue
        if key in counted:
            continue
        if key in open_nodes:
            raise _Recursive
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if isinstance(c, (dict, list)))
    return counted[id(document)] if isinstance(document, (dict, list)) else 1


def read_documents(path: Path) -> list[Any]:
    """Every YAML document of ``path``, each as PyYAML constructs it (None for an empty one).

    Raises :class:`Unreadable` with a one-line reason for anything that is not readable YAML.
    """
    data = _read_bytes(path, max_file_bytes())
    text = _text(data)
    try:
        documents = list(yaml.load_all(text, Loader=ManifestLoader))
    except RecursionError:
        raise Unreadable(
            "nested too deeply to read (Python's recursion limit; PyYAML without libyaml)"
        ) from None
    except yaml.YAMLError as exc:
        raise Unreadable(f"not YAML: {one_line(exc)}") from None
    except Exception as exc:  # a constructor's error: a date like 2024-13-45, say
        raise Unreadable(f"not YAML: {type(exc).__name__}: {one_line(exc)}") from None
    if _ALIAS.search(data):
        for index, document in enumerate(documents, start=1):
            try:
                size = expanded_nodes(document)
            except _Recursive:
                raise Unreadable(
                    f"document {index} holds a node that contains itself through an alias "
                    "(&name ... *name inside it); no manifest can"
                ) from None
            if size > MAX_EXPANDED_NODES:
                raise Unreadable(
                    f"document {index} expands to over {MAX_EXPANDED_NODES:,} nodes through "
                    "its aliases (*name); write the values out, or use fewer aliases"
                )
    return documents
