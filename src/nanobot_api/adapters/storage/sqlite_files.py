"""Opening the workspace's SQLite files the one way both stores need."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal, TypeVar

import anyio
import anyio.to_thread

_T = TypeVar("_T")
Synchronous = Literal["FULL", "NORMAL"]
BUSY_TIMEOUT_MS = 5000


def connect_wal(
    path: Path,
    *,
    synchronous: Synchronous,
    schema: str,
    schema_version: int,
    autocheckpoint: bool = True,
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` in place (blocking).

    Autocommit (isolation_level=None): each statement is its own transaction unless a
    BEGIN opens one, and a read never leaves one open that would pin the WAL. A file
    written by a newer schema is refused rather than misread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        _prepare(
            conn,
            path,
            synchronous=synchronous,
            schema=schema,
            schema_version=schema_version,
            autocheckpoint=autocheckpoint,
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
) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema_version:
        raise RuntimeError(f"{path} was written by a newer nanobot-api (schema {version})")
    conn.executescript(schema)
    conn.execute(f"PRAGMA user_version={schema_version}")


class LazyConnection:
    """One connection, opened on first use and handed to worker threads one at a time.

    sqlite3 connections may cross threads (``check_same_thread=False``) but must not be
    used by two at once: ``lock`` guards every use, on a thread or on the event loop.
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
        self.lock = threading.Lock()

    @property
    def current(self) -> sqlite3.Connection | None:
        """The open connection, if any (for uses that must not wait to open one)."""
        return self._conn

    async def get(self) -> sqlite3.Connection:
        """The connection, opened (in a thread) if this is its first use."""
        if self._closed:
            raise RuntimeError(f"{self._owner} is closed")
        if self._conn is None:
            async with self._open_lock:
                if self._conn is None:
                    self._conn = await anyio.to_thread.run_sync(
                        self._connect, limiter=self._limiter
                    )
        return self._conn

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
        with self.lock:
            return func(conn, *args)
