"""A throwaway PostgreSQL server for tests and benchmarks, started without root.

    with TemporaryPostgres.start(Path("/tmp/pg")) as server:
        url = server.create_database("t1")   # postgresql://postgres@127.0.0.1:PORT/t1

The server binaries come from the ``pgserver`` package (PostgreSQL's own build on
PyPI, so no system package is needed), else from ``initdb``/``postgres`` on ``PATH``.
It listens on 127.0.0.1 on a free port with trust authentication, and trades
durability for speed (``fsync=off``): its data lives for one test session.

PostgreSQL refuses to run as root. Run as root (as CI is), the server runs as the
unprivileged ``nobody`` user instead: its data folder is handed to that user and, when
``nobody`` cannot reach the binaries where they are installed (a virtualenv under
``/root``), they are copied once into a world-readable folder under the temp dir.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

if TYPE_CHECKING:
    from nanobot_api.adapters.storage.postgres_db import PostgresDatabase

_START_TIMEOUT_S = 60.0
_SETTINGS = (
    # Nothing here must survive the test session: skip every sync to disk.
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "max_connections=300",
    "shared_buffers=32MB",
    "log_min_messages=warning",
)


class PostgresUnavailable(RuntimeError):
    """Raised when no PostgreSQL server binaries can be found or started."""


def server_binaries() -> Path:
    """The folder holding ``initdb`` and ``postgres``: pgserver's, else the PATH's."""
    # Located, not imported: importing pgserver runs its own server machinery.
    spec = importlib.util.find_spec("pgserver")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
        if (folder / "postgres").exists():
            return folder
    found = shutil.which("initdb")
    if found is not None:
        return Path(found).resolve().parent
    raise PostgresUnavailable(
        "no PostgreSQL server binaries: pip install pgserver, or install initdb/postgres"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_user() -> pwd.struct_passwd | None:
    """Who the server runs as: None (this user), or ``nobody`` when this user is root."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam("nobody")


def _reachable_binaries(folder: Path, user: pwd.struct_passwd | None) -> Path:
    """``folder``, or a copy that ``user`` can execute (see the module docstring)."""
    if user is None or _runs_as(user, folder / "postgres"):
        return folder
    install = folder.parent  # bin/ beside lib/ and share/: copied whole, it still runs
    # pgserver's binaries find libpq by RPATH $ORIGIN/../../../pgserver.libs: the
    # wheel's .libs folder two levels up is copied too, at the same place.
    top = install.parent.parent
    parts = [install.relative_to(top), *(p.relative_to(top) for p in top.glob("pgserver.libs"))]
    tag = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"nanobot-postgres-{tag}"
    binaries = copy / install.relative_to(top) / "bin"
    if not (binaries / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix=".nanobot-postgres-"))
        for part in parts:
            shutil.copytree(top / part, staging / "install" / part, symlinks=True)
        os.chmod(staging, 0o755)
        with contextlib.suppress(OSError):  # another process copied it meanwhile
            os.replace(staging / "install", copy)
        shutil.rmtree(staging, ignore_errors=True)
    return binaries


def _runs_as(user: pwd.struct_passwd, binary: Path) -> bool:
    try:
        done = subprocess.run(
            [str(binary), "--version"],
            user=user.pw_uid,
            group=user.pw_gid,
            capture_output=True,
            check=False,
            timeout=30,
        )
    except OSError:
        return False
    return done.returncode == 0


class TemporaryPostgres:
    """A PostgreSQL server in ``root`` (created), stopped by :meth:`stop` or ``with``."""

    def __init__(self, root: Path, binaries: Path, port: int) -> None:
        self.root = root
        self.port = port
        self._binaries = binaries
        self._user = _as_user()
        self._process: subprocess.Popen[bytes] | None = None
        self._databases = 0

    @classmethod
    def start(cls, root: Path) -> TemporaryPostgres:
        """initdb in ``root/data`` and a running server; raises PostgresUnavailable."""
        user = _as_user()
        binaries = _reachable_binaries(server_binaries(), user)
        server = cls(root, binaries, _free_port())
        server._init()
        server.resume()
        return server

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        """The libpq URL of ``database`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its URL."""
        if name is None:
            self._databases += 1
            name = f"test_{os.getpid()}_{self._databases}"
        self.sql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Runs one statement through a short-lived connection (psycopg)."""
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as conn:
            conn.execute(statement.encode())

    def _run(self, *args: str) -> None:
        done = subprocess.run(
            [str(self._binaries / args[0]), *args[1:]],
            user=None if self._user is None else self._user.pw_uid,
            group=None if self._user is None else self._user.pw_gid,
            capture_output=True,
            check=False,
            timeout=_START_TIMEOUT_S,
        )
        if done.returncode != 0:
            why = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise PostgresUnavailable(f"{args[0]} failed: {why}")

    def _init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.data.mkdir(mode=0o700)
        if self._user is not None:
            os.chmod(self.root, 0o755)
            os.chown(self.data, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")

    def resume(self) -> None:
        """Starts the server (again, after :meth:`pause`) and waits until it answers."""
        options: list[str] = ["-p", str(self.port), "-h", "127.0.0.1", "-k", str(self.data)]
        for setting in _SETTINGS:
            options += ["-c", setting]
        log = (self.root / "server.log").open("ab")
        try:
            self._process = subprocess.Popen(
                [str(self._binaries / "postgres"), "-D", str(self.data), *options],
                user=None if self._user is None else self._user.pw_uid,
                group=None if self._user is None else self._user.pw_gid,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C in the terminal is the test run's
            )
        finally:
            log.close()
        try:
            self._wait_ready()
        except BaseException:
            self.pause()  # a server that never answered must not outlive the run
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                raise PostgresUnavailable(f"postgres exited; see {self.root / 'server.log'}")
            try:
                self.sql("SELECT 1")
            except Exception:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable("postgres did not answer in time") from None
                time.sleep(0.05)
            else:
                return

    def pause(self) -> None:
        """Stops the server (fast shutdown: open connections are cut); data is kept."""
        process, self._process = self._process, None
        if process is None:
            return
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stops the server and deletes its data."""
        self.pause()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ExternalPostgres:
    """A server someone else runs (``$NANOBOT_TEST_POSTGRES_URL``): databases are made on
    it through that URL, which needs the CREATEDB privilege."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._databases = 0

    def url(self, database: str = "") -> str:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(self._url, dbname=database) if database else self._url

    def create_database(self, name: str | None = None) -> str:
        import psycopg

        if name is None:
            self._databases += 1
            name = f"test_{os.getpid()}_{secrets.token_hex(4)}_{self._databases}"
        with psycopg.connect(self._url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"'.encode())
        return self.url(name)


@contextlib.contextmanager
def postgres_for_tests() -> Iterator[TemporaryPostgres | ExternalPostgres]:
    """The server named by ``$NANOBOT_TEST_POSTGRES_URL``, else a temporary one."""
    url = os.environ.get("NANOBOT_TEST_POSTGRES_URL")
    if url:
        yield ExternalPostgres(url)
        return
    with temporary_postgres() as server:
        yield server


@contextlib.contextmanager
def temporary_postgres() -> Iterator[TemporaryPostgres]:
    """A server in a fresh temp folder, deleted afterwards."""
    root = Path(tempfile.mkdtemp(prefix="nanobot-pg-"))
    os.chmod(root, 0o755)  # run as nobody (see above), the server must reach its folder
    try:
        server = TemporaryPostgres.start(root / "server")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def empty_tables(db: PostgresDatabase) -> None:
    """Deletes every row of every nanobot table but the schema's record, so the next
    test starts from an empty, migrated database."""
    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND tablename <> 'nanobot_schema'"
        )
        tables = [str(row[0]) for row in await cursor.fetchall()]
        if tables:
            names = ", ".join(f'"{name}"' for name in tables)
            await conn.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE".encode())


@contextlib.asynccontextmanager
async def scratch_database(url: str) -> AsyncIterator[PostgresDatabase]:
    """The database at ``url``, opened and migrated, emptied when the block ends: what
    a contract test takes (cheaper than creating a database per test)."""
    from nanobot_api.adapters.storage.postgres_db import PostgresDatabase

    async with PostgresDatabase(url, max_connections=8) as db:
        try:
            yield db
        finally:
            await empty_tables(db)
