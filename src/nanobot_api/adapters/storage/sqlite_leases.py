"""Per-session leases in the sessions file, for several processes sharing one SQLite
workspace: the same rules as the PostgreSQL leases (see postgres_leases), decided
inside one write transaction each (``BEGIN IMMEDIATE`` serializes them), on this
machine's clock."""

from __future__ import annotations

import abc
import os
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from nanobot_api.adapters.storage.leases import STALLED, PolledLeases
from nanobot_api.domain.sessions import Lease, lease_lost

_T = TypeVar("_T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS session_leases (
    session_key TEXT PRIMARY KEY,
    token       INTEGER NOT NULL,
    holder      INTEGER,
    expires_at  REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS session_queue (
    ticket      INTEGER PRIMARY KEY AUTOINCREMENT,
    session_key TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    owner       INTEGER
);
CREATE INDEX IF NOT EXISTS session_queue_by_key ON session_queue (session_key, ticket);
"""


def join(conn: sqlite3.Connection, key: str, lease_s: float) -> tuple[int, int | None]:
    """A new place at the end of the session's queue, and the session too if it is free:
    ``(ticket, token or None)``, in one transaction (the common case costs one write)."""
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        cursor = conn.execute(
            "INSERT INTO session_queue (session_key, expires_at, owner) VALUES (?, ?, ?)",
            (key, now + lease_s, os.getpid()),
        )
        ticket = int(cursor.lastrowid or 0)
        token = _take(conn, key, ticket, now, now + lease_s, placed=lease_s > 0)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return ticket, token


def take(conn: sqlite3.Connection, key: str, ticket: int, lease_s: float) -> int | None:
    """The new fencing token if ``ticket`` may run now; None to wait; STALLED if the place
    itself expired."""
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        token = _take(conn, key, ticket, now, now + lease_s)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return token


def _take(
    conn: sqlite3.Connection,
    key: str,
    ticket: int,
    now: float,
    until: float,
    *,
    placed: bool = False,
) -> int | None:
    """``placed``: the place was written in this transaction, expiring at ``until``, so
    it needs no renewal (each statement saved is per turn: bench/proxy_overhead.py)."""
    conn.execute("DELETE FROM session_queue WHERE session_key = ? AND expires_at < ?", (key, now))
    # Every process on one SQLite file runs on this machine: a place ahead of this one
    # whose process is gone (kill -9, a crash) is given up at once, not at its expiry,
    # so a server restarted after a crash gets its sessions back straight away.
    ahead = conn.execute(
        "SELECT ticket, owner FROM session_queue WHERE session_key = ? AND ticket < ?",
        (key, ticket),
    ).fetchall()
    dead = [(place,) for place, owner in ahead if owner is not None and not _alive(owner)]
    if dead:
        conn.executemany("DELETE FROM session_queue WHERE ticket = ?", dead)
    if (
        not placed
        and conn.execute(
            "UPDATE session_queue SET expires_at = ? WHERE ticket = ?", (until, ticket)
        ).rowcount
        == 0
    ):
        return STALLED
    # The place is first in the queue when no live place is ahead of it (what is ahead
    # was read in this transaction, so no second query of the queue is needed).
    if len(dead) < len(ahead):
        return None
    # First in the queue: the holder before (if any) has left it (released, expired or
    # gone with its process), and its place expired with its lease. The token goes up
    # by one from the last one this session had, in one statement.
    (token,) = conn.execute(
        "INSERT INTO session_leases (session_key, token, holder, expires_at) "
        "VALUES (?, 1, ?, ?) ON CONFLICT (session_key) DO UPDATE SET "
        "token = token + 1, holder = excluded.holder, expires_at = excluded.expires_at "
        "RETURNING token",
        (key, ticket, until),
    ).fetchone()
    return int(token)


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a signal 0 tells, sending none)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    return True


def renew(conn: sqlite3.Connection, key: str, token: int, ticket: int, lease_s: float) -> bool:
    until = time.time() + lease_s
    held = conn.execute(
        "UPDATE session_leases SET expires_at = ? WHERE session_key = ? AND token = ?",
        (until, key, token),
    ).rowcount
    conn.execute("UPDATE session_queue SET expires_at = ? WHERE ticket = ?", (until, ticket))
    return held > 0


def release(conn: sqlite3.Connection, key: str, token: int, ticket: int) -> None:
    conn.execute(
        "UPDATE session_leases SET holder = NULL WHERE session_key = ? AND token = ?",
        (key, token),
    )
    conn.execute("DELETE FROM session_queue WHERE ticket = ?", (ticket,))


def leave(conn: sqlite3.Connection, ticket: int) -> None:
    conn.execute("DELETE FROM session_queue WHERE ticket = ?", (ticket,))


class SqliteSessionLeases(PolledLeases):
    """SessionLeases for a store in one SQLite file (mixed into SqliteSessionStore):
    ``_run`` runs a function on the file's connection in a worker thread, ``_run_short``
    a short write on the event loop when that cannot wait on the file.

    Every turn joins and leaves its session's queue: on a thread each cost a hand-off
    there and back, more than the write, and a thousand turns starting together queued
    behind each other's hand-offs (bench/inflight.py)."""

    _lease_s: float

    @abc.abstractmethod
    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        """Runs ``func(connection, *args)`` on the store's file in a worker thread."""

    @abc.abstractmethod
    async def _run_short(self, func: Callable[..., _T], *args: object) -> _T:
        """Runs ``func(connection, *args)``, a write of a few statements, on the event
        loop if the file is free, else as ``_run`` does."""

    async def _join(self, key: str) -> tuple[int, int | None]:
        return await self._run_short(join, key, self._lease_s)

    async def _take(self, key: str, ticket: int) -> int | None:
        return await self._run_short(take, key, ticket, self._lease_s)

    async def _leave(self, ticket: int) -> None:
        await self._run(leave, ticket)

    async def renew(self, lease: Lease) -> None:
        held = await self._run(renew, str(lease.key), lease.token, lease.ticket, self._lease_s)
        if not held:
            raise lease_lost()

    async def release(self, lease: Lease) -> None:
        await self._run_short(release, str(lease.key), lease.token, lease.ticket)
