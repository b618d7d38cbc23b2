"""Opening the workspace's SQLite files the one way both stores need."""

from __future__ import annotations

import enum
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Literal, Self, TypeVar

import anyio
import anyio.to_thread

from nanobot_api.adapters.storage.private import narrow_files, private_dir, private_file
from nanobot_api.domain.errors import SchemaMismatch, StorageUnavailable

_T = TypeVar("_T")
log = logging.getLogger(__name__)
Synchronous = Literal["FULL", "NORMAL"]
BUSY_TIMEOUT_MS = 5000


def connect_wal(
    path: Path,
    *,
    synchronous: Synchronous,
    schema: str,
    schema_version: int,
    autocheckpoint: bool = True,
    upgrade: Callable[[sqlite3.Connection, int], None] | None = None,
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` in place (blocking).

    Autocommit (isolation_level=None): each statement is its own transaction unless a
    BEGIN opens one, and a read never leaves one open that would pin the WAL. A file
    written by a newer schema is refused rather than misread.
    """
    private_dir(path.parent)
    # Created 0600 before SQLite opens it: SQLite gives -wal and -shm the same mode.
    private_file(path)
    narrow_files(path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        _prepare(
            conn,
            path,
            synchronous=synchronous,
            schema=schema,
            schema_version=schema_version,
            autocheckpoint=autocheckpoint,
            upgrade=upgrade,
        )
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(
    conn: sqlite3.Connection,
    path: Path,
    *,
    synchronous: Synchronous,
    schema: str,
    schema_version: int,
    autocheckpoint: bool,
    upgrade: Callable[[sqlite3.Connection, int], None] | None,
) -> None:
    _into_wal(conn)
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema_version:
        raise RuntimeError(f"{path} was written by a newer nanobot-api (schema {version})")
    if upgrade is not None and version < schema_version:
        upgrade(conn, version)
    conn.executescript(schema)
    conn.execute(f"PRAGMA user_version={schema_version}")


def _into_wal(conn: sqlite3.Connection) -> None:
    """WAL mode, waiting for another process doing the same: two processes making a new
    file together (``serve --workers``) get "database is locked" from the switch at once,
    without SQLite's busy wait, about one start in three."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        else:
            return


class Unavailable(enum.Enum):
    """Why :meth:`LazyConnection.try_now` could not run its function."""

    NOT_OPEN = "not open"
    BUSY = "busy"
    LOCKED = "locked by another process"


class LazyConnection:
    """One connection, opened on first use and handed to worker threads one at a time.

    sqlite3 connections may cross threads (``check_same_thread=False``) but must not be
    used by two at once: a lock guards every use, on a thread or on the event loop.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        owner: str,
        *,
        limiter: anyio.CapacityLimiter | None = None,
    ) -> None:
        self._connect = connect
        self._owner = owner
        self._limiter = limiter
        self._conn: sqlite3.Connection | None = None
        self._open_lock = anyio.Lock()
        self._closed = False
        self._lock = threading.Lock()

    def try_now(self, func: Callable[..., _T], *args: object) -> _T | Unavailable:
        """``func(connection, *args)`` right here, if the connection is open and free;
        for uses on the event loop that must never wait."""
        conn = self._conn
        if conn is None:
            return Unavailable.NOT_OPEN
        if not self._lock.acquire(blocking=False):
            return Unavailable.BUSY
        try:
            return func(conn, *args)
        finally:
            self._lock.release()

    async def get(self) -> sqlite3.Connection:
        """The connection, opened (in a thread) if this is its first use."""
        self._refuse_if_closed()
        if self._conn is None:
            async with self._open_lock:
                if self._conn is None:
                    conn = await anyio.to_thread.run_sync(self._connect, limiter=self._limiter)
                    try:
                        self._refuse_if_closed()  # closed while it was opening
                    except RuntimeError:
                        await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)
                        raise
                    self._conn = conn
        return self._conn

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self._owner} is closed")

    async def run(self, func: Callable[..., _T], *args: object) -> _T:
        """``func(connection, *args)`` in a worker thread, holding ``lock``."""
        conn = await self.get()
        return await anyio.to_thread.run_sync(
            self._locked, func, conn, *args, limiter=self._limiter
        )

    async def close(self) -> None:
        """Closes the connection; later uses raise. Idempotent."""
        self._closed = True
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(
                self._locked, sqlite3.Connection.close, conn, limiter=self._limiter
            )

    def _locked(self, func: Callable[..., _T], conn: sqlite3.Connection, *args: object) -> _T:
        with self._lock:
            return func(conn, *args)


def _identity_of(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` as the OS knows it (device, inode), or None if there is none."""
    try:
        found = os.stat(path)
    except FileNotFoundError:
        return None
    return found.st_dev, found.st_ino


class SqliteFile:
    """What a store in one SQLite file shares: where it is, and a connection opened on
    ``await store.open()`` or on first use (so a synchronous composition root can build
    it), released by ``await store.close()``; ``async with`` does both."""

    def __init__(self, path: Path, db: LazyConnection) -> None:
        self._path = path
        self._db = db
        self._identity: tuple[int, int] | None = None
        self._schema: int | None = None  # the schema version the file had once opened
        self._reported = False

    @property
    def path(self) -> Path:
        return self._path

    async def open(self) -> Self:
        """Opens the file now (creating it and its folder if needed). Idempotent."""
        await self._db.get()
        if self._identity is None:
            self._identity = await anyio.to_thread.run_sync(_identity_of, self._path)
        if self._schema is None:
            self._schema = await self._db.run(_schema_version)
        return self

    async def open_if_present(self) -> None:
        """Opens the file if it exists (so a corrupt one fails now, at start-up), and
        otherwise leaves it to be made on first use."""
        if await anyio.Path(self._path).exists():
            await self.open()

    async def ping(self) -> None:
        """Raises unless the file is open, still in place, and answers a query (for
        readiness); SchemaMismatch if its schema version is no longer the one it was
        opened with (another version of nanobot-api migrated it)."""
        self.check_in_place()
        found = await self._db.run(_schema_version)
        if self._schema is not None and found != self._schema:
            raise SchemaMismatch(
                f"{self._path} was migrated to schema {found} by another nanobot-api "
                f"(this one uses {self._schema}); upgrade this one"
            )

    def check_in_place(self) -> None:
        """Raises StorageUnavailable if the file this store opened is no longer at its
        path (deleted, or replaced by another file): what this store wrote from now on
        would be lost at the next restart. Said once in the log, with the path.

        A stat of the path, a few microseconds: cheap enough for every turn."""
        expected = self._identity
        if expected is None:
            return  # never opened explicitly (a tool's short-lived store)
        found = _identity_of(self._path)
        if found == expected:
            return
        why = "deleted" if found is None else "replaced by another file"
        if not self._reported:
            self._reported = True
            log.error(
                "%s was %s while the server ran; refusing work that would be lost "
                "(restart the server to use the file now at that path)",
                self._path,
                why,
            )
        raise StorageUnavailable(
            f"The server's {self._path.stem} store is unavailable: its file was {why} while "
            "the server ran; an operator must restart the server",
            retry_after_s=30.0,
        )

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        """``func(connection, *args)`` in a worker thread, for a store's every read and
        write: refused (StorageUnavailable) once the file is no longer the one opened.
        A file first opened here, on first use, is the one checked from then on."""
        if self._identity is None:
            await self.open()
        else:
            self.check_in_place()
        return await self._db.run(func, *args)

    async def _run_if_present(self, func: Callable[..., _T], *args: object) -> _T | None:
        """As ``_run``, but None when the file was never made: a sweep must not make
        the file of a store nobody used."""
        if self._identity is None and not await anyio.Path(self._path).exists():
            return None
        return await self._run(func, *args)

    async def close(self) -> None:
        """Closes the connection; the store must not be used afterwards. Idempotent."""
        await self._db.close()

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction around the block (blocking). IMMEDIATE takes the write
    lock at once, so a read-then-write is never overtaken by another connection."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])
