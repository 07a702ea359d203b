"""Writing into a folder the user owns: only what rtflow wrote is replaced or removed.

A compile's output folder is usually a Git checkout that holds other things too (another
pipeline's manifests, hand-written files, a whole repository when ``-o .``). So the folder keeps
a record, ``.rtflow-compiled``, of every file each pipeline's compile wrote and its SHA-256:

* a file is **replaced** only when the record says this compile's pipeline wrote it, or its
  first line is the very header this compile writes (a folder from before the record existed);
  anything else in the way is an error, and nothing is written;
* a file is **removed** only when the record says this pipeline wrote it, the new compile no
  longer produces it, and it is unchanged since (an edited one is kept, reported, and left to
  its owner); other pipelines' files are never touched;
* links are never followed: a symbolic link anywhere on a path rtflow writes is an error (a
  link could point outside the folder);
* the new contents are first written into a scratch folder inside the output folder, then
  moved into place: a compile that fails (a full disk, a permission) leaves the folder as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rtflow.errors import RtflowError

RECORD = ".rtflow-compiled"
SHARED = "-"  # the owner of the folder's root kustomization.yaml, which every pipeline shares
_RECORD_HEAD = (
    "# rtflow: the files each pipeline's compile wrote into this folder, with their SHA-256.\n"
    "# A compile replaces or removes only these. Keep this file in Git beside them.\n"
)


class OutputError(RtflowError):
    """The output folder cannot be written as asked; nothing in it was changed."""


@dataclass(frozen=True)
class Entry:
    owner: str  # the pipeline that wrote the file, or SHARED
    digest: str


@dataclass
class FolderChanges:
    created: list[Path] = field(default_factory=list)
    updated: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)
    left: list[Path] = field(default_factory=list)  # no longer produced, but edited since

    @property
    def changed(self) -> list[Path]:
        return sorted([*self.created, *self.updated, *self.removed])

    def summary(self) -> str:
        parts = [
            f"{len(files)} {word}"
            for files, word in (
                (self.created, "new"),
                (self.updated, "updated"),
                (self.removed, "removed"),
            )
            if files
        ]
        return ", ".join(parts) if parts else "no file changed"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_record(root: Path) -> dict[str, Entry]:
    """Folder-relative path -> who wrote it and its digest; empty without a record."""
    path = root / RECORD
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; rtflow does not follow links, remove it")
    if not path.exists():
        return {}
    record: dict[str, Entry] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"{path}: cannot be read ({_reason(exc)})") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or len(parts[1]) != 64:
            raise OutputError(
                f"{path}:{number}: not a record line (owner, SHA-256, path, tab-separated); "
                "restore the file from Git, or delete it to let the next compile start a new one"
            )
        owner, sha, relative = parts
        record[relative] = Entry(owner, sha)
    return record


def record_text(record: Mapping[str, Entry]) -> str:
    rows = sorted((p, e.owner, e.digest) for p, e in record.items())
    return _RECORD_HEAD + "".join(f"{o}\t{d}\t{p}\n" for p, o, d in rows)


def check_root(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise OutputError(f"-o {root}: is not a folder; give a folder (it is created if missing)")


def unsafe_part(root: Path, relative: str) -> str | None:
    """Why rtflow must not write ``root/relative`` (a link or a non-file on the way), or None."""
    current = root
    parts = Path(relative).parts
    for index, part in enumerate(parts):
        current = current / part
        if current.is_symlink():
            return f"{current} is a symbolic link; rtflow does not write through links"
        last = index == len(parts) - 1
        if current.exists() and not last and not current.is_dir():
            return f"{current} is a file where rtflow needs a folder"
        if current.exists() and last and not current.is_file():
            return f"{current} is not a regular file"
    return None


def current_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        return ""  # not rtflow's: rtflow writes UTF-8


def stale_paths(
    record: Mapping[str, Entry],
    owners: Iterable[str],
    files: Container[str],
    kept: tuple[str, ...],
) -> list[str]:
    """Recorded paths of these pipelines that this compile no longer produces."""
    mine = set(owners)
    return sorted(
        p
        for p, entry in record.items()
        if entry.owner in mine and p not in files and not p.startswith(kept)
    )


def write(
    root: Path,
    files: Mapping[str, tuple[str, str]],
    *,
    owners: Iterable[str],
    kept: tuple[str, ...],
) -> FolderChanges:
    """Write ``files`` (path -> (owner, text)) for the pipelines ``owners`` into ``root``."""
    check_root(root)
    record = read_record(root)
    changes = FolderChanges()
    pending: dict[str, str] = {}
    for relative, (_owner, text) in sorted(files.items()):
        problem = unsafe_part(root, relative)
        if problem:
            raise OutputError(f"{problem}; remove it or compile into another folder (-o)")
        path = root / relative
        on_disk = current_text(path)
        if on_disk == text:
            continue
        if on_disk is not None and relative not in record and not _same_header(on_disk, text):
            raise OutputError(
                f"{path} exists and was not written by rtflow; move it away or compile into "
                "another folder (-o): compile replaces only the files it wrote"
            )
        pending[relative] = text
        (changes.updated if on_disk is not None else changes.created).append(path)
    new_record = {p: e for p, e in record.items() if e.owner not in set(owners)}
    for relative, (owner, text) in files.items():
        new_record[relative] = Entry(owner, digest(text))
    removable: list[Path] = []
    for relative in stale_paths(record, owners, files, ()):
        if relative.startswith(kept):
            new_record[relative] = record[relative]  # an environment this compile left alone
            continue
        path = root / relative
        if unsafe_part(root, relative):
            continue  # replaced by a link or a folder since: not rtflow's any more
        on_disk = current_text(path)
        if on_disk is None:
            continue
        if digest(on_disk) == record[relative].digest:
            removable.append(path)
        else:
            changes.left.append(path)
    _commit(root, pending, removable, record_text(new_record))
    changes.removed = removable
    return changes


def _commit(root: Path, pending: Mapping[str, str], removable: list[Path], record: str) -> None:
    """Everything into a scratch folder first, then moved into place (renames on one file
    system): a write that fails leaves the folder untouched."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".rtflow-scratch-", dir=root))
    except OSError as exc:
        raise OutputError(f"-o {root}: cannot be written ({_reason(exc)})") from None
    try:
        staged: list[tuple[Path, Path]] = []
        for index, (relative, text) in enumerate(sorted(pending.items())):
            temporary = scratch / str(index)
            temporary.write_text(text, encoding="utf-8")
            staged.append((temporary, root / relative))
        (scratch / RECORD).write_text(record, encoding="utf-8")
        _make_folders(root, {target.parent for _, target in staged})
        for temporary, target in staged:
            os.replace(temporary, target)
        for path in removable:
            path.unlink()
        os.replace(scratch / RECORD, root / RECORD)
    except OSError as exc:
        raise OutputError(
            f"-o {root}: writing failed ({_reason(exc)}); the folder is as it was"
        ) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _make_folders(root: Path, folders: Iterable[Path]) -> None:
    """Create the missing folders, or none of them (a new folder needs space too)."""
    made: list[Path] = []
    try:
        for folder in sorted(folders, key=lambda f: len(f.parts)):
            for parent in (*reversed(folder.relative_to(root).parents), folder.relative_to(root)):
                path = root / parent
                if not path.exists():
                    path.mkdir()
                    made.append(path)
    except OSError:
        for path in reversed(made):
            path.rmdir()
        raise


def _same_header(on_disk: str, text: str) -> bool:
    """Written by rtflow from the same source, before this folder had a record."""
    first = text.split("\n", 1)[0]
    return "rtflow" in first and on_disk.split("\n", 1)[0] == first


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)
