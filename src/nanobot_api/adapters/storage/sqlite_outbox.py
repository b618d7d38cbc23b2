"""The durable outbox in its own embedded SQLite file, ``<workspace>/outbox.sqlite3``.

A sibling of ``sessions.sqlite3`` rather than a table inside it: SQLite lets one writer
at a time into a database file, so draining a thousand events (a claim and a settle
each) in the same file would queue chat turns' history commits behind the outbox's
writes. Two files keep the two write locks apart; both use the same recipe (WAL, one
connection per store, blocking calls in a worker thread).

Every write is one transaction and durable on return (``synchronous=FULL`` by default),
so an event is on disk before any platform sees it, and a claim's attempt count survives
a crash in the middle of the attempt.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import anyio

from nanobot_api.adapters.storage.sqlite_files import (
    LazyConnection,
    SqliteFile,
    Synchronous,
    connect_wal,
    immediate_transaction,
)
from nanobot_api.domain.errors import NotFound
from nanobot_api.domain.outbox import (
    OUTBOX_STATUSES,
    Claim,
    OutboxEvent,
    OutboxStatus,
    claimed,
    retried,
)

_T = TypeVar("_T")
# 2: retried_from (an operator's retry keeps the attempts counted so far).
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    chat_id         TEXT NOT NULL,
    content         TEXT NOT NULL,
    media           TEXT NOT NULL,
    status          TEXT NOT NULL,
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL,
    progress        INTEGER NOT NULL,
    next_attempt_at REAL,
    last_error      TEXT,
    delivered_at    REAL,
    retried_from    INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""
_COLUMNS = (
    "id, channel, chat_id, content, media, status, created_at, attempts, progress, "
    "next_attempt_at, last_error, delivered_at, retried_from"
)

_STATUSES: dict[object, OutboxStatus] = {status: status for status in OUTBOX_STATUSES}


class SqliteOutbox(SqliteFile):
    """An Outbox and OutboxAdmin in a SQLite file, in WAL mode.

    Opened and closed as every ``SqliteFile``. Calls run one at a time on a single
    worker thread (a capacity limiter of one), so a burst of deliveries settling at
    once waits on the event loop, not by occupying the threads the session store and
    document readers share.
    """

    def __init__(self, path: Path, *, synchronous: Synchronous = "FULL") -> None:
        # One call at a time: the outbox's writes are read-then-write transactions.
        super().__init__(
            path,
            LazyConnection(
                partial(_connect, path, synchronous),
                "SqliteOutbox",
                limiter=anyio.CapacityLimiter(1),
            ),
        )

    # --- Outbox ------------------------------------------------------------------------

    async def enqueue(self, event: OutboxEvent) -> None:
        """Inserts the event; durable on return. An id already stored is an error."""
        await self._run(_insert, event)

    async def claim_due(self, now: float, limit: int, exclude: Collection[str] = ()) -> Claim:
        """Due pending events, oldest due first, each with one more attempt counted."""
        return await self._run(_claim, now, limit, frozenset(exclude))

    async def settle(self, event: OutboxEvent) -> bool:
        """Writes the event's state; False if its row is gone."""
        return await self._run(_update, event)

    # --- OutboxAdmin -------------------------------------------------------------------

    async def events(self, status: OutboxStatus | None = None) -> tuple[OutboxEvent, ...]:
        """Every event, or those with ``status``, oldest first."""
        return await self._run(_select, status)

    async def retry(self, event_id: str, now: float, *, force: bool = False) -> OutboxEvent:
        """The event made pending and due now; NotFound for an unknown id,
        InvalidRequest for a delivered one unless ``force``."""
        return await self._run(_retry, event_id, now, force)

    async def drop(self, event_id: str) -> OutboxEvent:
        """Deletes the event, returning it; NotFound for an unknown id."""
        return await self._run(_drop, event_id)

    # --- plumbing ----------------------------------------------------------------------

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        return await self._db.run(func, *args)


# --- in the worker thread ----------------------------------------------------------------


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    conn = connect_wal(
        path, synchronous=synchronous, schema=_SCHEMA, schema_version=_SCHEMA_VERSION
    )
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    if "retried_from" not in columns:  # a file of schema 1
        conn.execute("ALTER TABLE outbox ADD COLUMN retried_from INTEGER NOT NULL DEFAULT 0")
    return conn


def _row(event: OutboxEvent) -> tuple[object, ...]:
    return (
        event.id,
        event.channel,
        event.chat_id,
        event.content,
        json.dumps(list(event.media), ensure_ascii=False),
        event.status,
        event.created_at,
        event.attempts,
        event.progress,
        event.next_attempt_at,
        event.last_error,
        event.delivered_at,
        event.retried_from,
    )


def _event(row: tuple[Any, ...]) -> OutboxEvent:
    ident, channel, chat_id, content, media, status, created, attempts, progress = row[:9]
    next_at, error, delivered_at, retried_from = row[9:]
    known = _STATUSES.get(status)
    if known is None:
        raise ValueError(f"stored outbox event has an unknown status {status!r}")
    return OutboxEvent(
        str(ident),
        str(channel),
        str(chat_id),
        str(content),
        tuple(str(path) for path in json.loads(media)),
        known,
        float(created),
        int(attempts),
        int(progress),
        None if next_at is None else float(next_at),
        None if error is None else str(error),
        None if delivered_at is None else float(delivered_at),
        int(retried_from),
    )


def _insert(conn: sqlite3.Connection, event: OutboxEvent) -> None:
    conn.execute(f"INSERT INTO outbox ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", _row(event))


def _update(conn: sqlite3.Connection, event: OutboxEvent) -> bool:
    cursor = conn.execute(
        "UPDATE outbox SET status = ?, attempts = ?, progress = ?, next_attempt_at = ?, "
        "last_error = ?, delivered_at = ?, retried_from = ? WHERE id = ?",
        (
            event.status,
            event.attempts,
            event.progress,
            event.next_attempt_at,
            event.last_error,
            event.delivered_at,
            event.retried_from,
            event.id,
        ),
    )
    return cursor.rowcount > 0


def _claim(conn: sqlite3.Connection, now: float, limit: int, exclude: frozenset[str]) -> Claim:
    # One write transaction: the attempts are counted in the same commit that takes the
    # events, so no reader (nor a restart) sees an event taken without its attempt.
    with immediate_transaction(conn):
        cursor = conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE status = 'pending' "
            "ORDER BY next_attempt_at, rowid"
        )
        taken: list[OutboxEvent] = []
        next_due: float | None = None
        for row in cursor:
            event = _event(row)
            if event.id in exclude:
                continue
            due = event.next_attempt_at if event.next_attempt_at is not None else now
            if due > now or len(taken) >= limit:
                next_due = due
                break
            taken.append(claimed(event))
        cursor.close()
        conn.executemany(
            "UPDATE outbox SET attempts = ? WHERE id = ?", [(e.attempts, e.id) for e in taken]
        )
    return Claim(tuple(taken), next_due)


def _select(conn: sqlite3.Connection, status: OutboxStatus | None) -> tuple[OutboxEvent, ...]:
    where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
    cursor = conn.execute(f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY created_at, rowid", args)
    return tuple(_event(row) for row in cursor)


def _get(conn: sqlite3.Connection, event_id: str) -> OutboxEvent:
    row = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (event_id,)).fetchone()
    if row is None:
        raise NotFound(f"No outbox event with id {event_id!r}", param="id")
    return _event(row)


def _retry(conn: sqlite3.Connection, event_id: str, now: float, force: bool) -> OutboxEvent:
    with immediate_transaction(conn):
        event = retried(_get(conn, event_id), now, force=force)
        _update(conn, event)
    return event


def _drop(conn: sqlite3.Connection, event_id: str) -> OutboxEvent:
    with immediate_transaction(conn):
        event = _get(conn, event_id)
        conn.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
    return event
