"""One container of a pod as a process: its volumes mounted where the pod spec mounts them.

``python -m rtflow.testing.pod_sandbox SPEC`` is what :mod:`rtflow.testing.pod_runner` starts
for each container, inside the pod network namespace (``ip netns exec``). SPEC is a JSON file:
``root`` (an empty folder of the container's), ``mounts`` (``[source, target, read_only]``, the
pod's volumes as folders and files the runner prepared), ``argv``, ``env`` and ``cwd``.

The container's image is this machine's root file system: the sandbox takes a private mount
namespace, binds every top-level folder of ``/`` into ``root`` (``/run`` becomes a fresh tmpfs),
and chroots there. The mount paths a pod uses that this machine does not have
(``/var/run/argo``, ``/var/run/secrets/...``, Argo's ``/mainctrfs/...``) are then made inside
``root`` or the tmpfs, never on this machine. Every volume is bind-mounted at its mount path
(a file source onto a file), and the sandbox replaces itself with the container's command
(``execvpe``: the pid the runner holds is the container's).

Every source is opened before anything is mounted, so a volume mounted on ``/tmp`` cannot hide
the sources of the mounts that follow. Nothing is made in this machine's folders: a top-level
folder below which a target does not exist here (``/etc/argo-events``, where Argo Events'
controller reads its ConfigMap) is not bound but overlaid in the container's root (overlayfs,
its writes in the container's own folder, the mounts below it bound again on top), so the
target is made in the overlay; a target below a bound folder must exist, unless it is inside a
volume mounted before it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
MS_RDONLY = 0x1
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(
    source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None
) -> None:
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def _overlaid(targets: list[str]) -> set[str]:
    """The top-level folders of this machine below which a mount target does not exist (and
    is not inside another of the pod's mounts): ``/etc/argo-events``, where Argo Events'
    controller reads its ConfigMap. An image would have the folder, or the runtime would make
    it in the container's own root file system; here that folder is this machine's."""
    resolved = [Path(os.path.realpath(t)) for t in targets]
    wanted = set()
    for target in resolved:
        if target.exists() or len(target.parts) < 3 or target.parts[1] == "run":
            continue
        if any(target != other and target.is_relative_to(other) for other in resolved):
            continue
        top = Path("/") / target.parts[1]
        if top.is_dir() and not top.is_symlink():
            wanted.add(target.parts[1])
    return wanted


def _overlay(entry: str, target: Path, scratch: Path) -> None:
    """``/entry`` at ``target`` as an overlay whose writes go to ``scratch`` (the container's
    own folder), never to this machine; the mounts below ``/entry`` (``ip netns exec``'s
    ``/etc/hosts``) bound again on top, as a recursive bind would carry them."""
    upper, work = scratch / entry / "upper", scratch / entry / "work"
    upper.mkdir(parents=True)
    work.mkdir(parents=True)
    _mount("overlay", str(target), "overlay", 0,
           f"lowerdir=/{entry},upperdir={upper},workdir={work}")  # fmt: skip
    with open("/proc/self/mountinfo") as info:
        points = [line.split()[4].encode().decode("unicode_escape") for line in info]
    for point in sorted(set(points), key=lambda p: len(Path(p).parts)):
        below = Path(point)
        if below.is_relative_to(f"/{entry}") and below != Path(f"/{entry}"):
            inside = target / below.relative_to(f"/{entry}")
            if inside.exists():
                _mount(point, str(inside), None, MS_BIND | MS_REC)


def _root(new_root: Path, overlaid: set[str] | None = None) -> set[str]:
    """``new_root`` as this machine's root file system: each top-level folder bound into it
    (recursively), or overlaid (:func:`_overlay`) for those in ``overlaid``, each top-level
    link copied; ``/run`` a fresh tmpfs. Returns the names of the top-level entries that are
    this machine's (a mount target below one must exist)."""
    host = set()
    new_root.mkdir(parents=True, exist_ok=True)
    for entry in sorted(os.listdir("/")):
        source, target = Path("/") / entry, new_root / entry
        if entry == "run" or target.exists() or target.is_symlink():
            continue
        if entry in (overlaid or set()) and source.is_dir() and not source.is_symlink():
            target.mkdir()
            _overlay(entry, target, new_root.parent / f"{new_root.name}.overlay")
            continue
        host.add(entry)
        if source.is_symlink():
            os.symlink(os.readlink(source), target)
        elif source.is_dir():
            target.mkdir()
            _mount(str(source), str(target), None, MS_BIND | MS_REC)
    (new_root / "run").mkdir(exist_ok=True)
    _mount("tmpfs", str(new_root / "run"), "tmpfs", 0)
    return host


def enter(new_root: Path, mounts: list[tuple[str, str, bool]]) -> None:
    """This process in a private mount namespace, chrooted to ``new_root`` (this machine's
    file system, see :func:`_root`), with the pod's volumes mounted."""
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    opened = [
        (os.open(src, os.O_PATH), Path(src).is_dir(), Path(dst), ro) for src, dst, ro in mounts
    ]
    host = _root(new_root, _overlaid([dst for _, dst, _ in mounts]))
    os.chroot(new_root)
    os.chdir("/")
    mounted: list[Path] = []
    # Shallow targets first: a volume on /tmp before one on /tmp/x.
    for fd, is_dir, target, read_only in sorted(opened, key=lambda m: len(m[2].parts)):
        if not target.exists():
            resolved = Path(os.path.realpath(target))
            inside = any(resolved.is_relative_to(m) for m in mounted)
            if resolved.parts[1] in host and not inside:
                raise FileNotFoundError(
                    f"mount target {target}: not on this machine (its folders are not changed)"
                )
            if is_dir:
                resolved.mkdir(parents=True, exist_ok=True)
            else:
                resolved.parent.mkdir(parents=True, exist_ok=True)
                resolved.touch()
        _mount(f"/proc/self/fd/{fd}", str(target), None, MS_BIND | MS_REC)
        mounted.append(Path(os.path.realpath(target)))
        if read_only:
            _mount(None, str(target), None, MS_BIND | MS_REMOUNT | MS_RDONLY)
        os.close(fd)


def main(argv: list[str]) -> None:
    spec = json.loads(Path(argv[1]).read_text())
    enter(Path(spec["root"]), [(m[0], m[1], bool(m[2])) for m in spec["mounts"]])
    os.chdir(spec.get("cwd") or "/")
    command = spec["argv"]
    os.execvpe(command[0], command, spec["env"])


if __name__ == "__main__":
    main(sys.argv)
