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

import sqlite3
from collections.abc import Collection
from functools import partial
from pathlib import Path

import anyio

from nanobot_api.adapters.storage.outbox_rows import (
    ATTEMPT_LOG_COLUMN,
    AWAITED_MEDIA,
    COLUMNS,
    TALLY_COUNTS,
    TALLY_OLDEST,
    claim_until,
    event_row,
    insert_sql,
    log_json,
    media_names,
    row_event,
    state_row,
    tally_of,
    update_state_sql,
)
from nanobot_api.adapters.storage.sqlite_files import (
    LazyConnection,
    SqliteFile,
    Synchronous,
    connect_wal,
    immediate_transaction,
)
from nanobot_api.domain.errors import NotFound
from nanobot_api.domain.outbox import (
    Claim,
    OutboxEvent,
    OutboxStatus,
    OutboxTally,
    claimed,
    retried,
)

# 2: retried_from (an operator's retry keeps the attempts counted so far).
# 3: attempt_log (the record of each event's last attempts).
_SCHEMA_VERSION = 3
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
    retried_from    INTEGER NOT NULL DEFAULT 0,
    claimed_until   REAL,
    attempt_log     TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (status, next_attempt_at);
"""
_COLUMNS = COLUMNS
_INSERT = insert_sql("?")
_UPDATE_STATE = update_state_sql("?")
DEFAULT_CLAIM_S = 30.0


class SqliteOutbox(SqliteFile):
    """An Outbox and OutboxAdmin in a SQLite file, in WAL mode.

    Opened and closed as every ``SqliteFile``. Calls run one at a time on a single
    worker thread (a capacity limiter of one), so a burst of deliveries settling at
    once waits on the event loop, not by occupying the threads the session store and
    document readers share.

    Several processes may deliver from one file: a claim marks its events claimed for
    ``claim_s`` seconds in the transaction that takes them (renewed while they are
    being delivered, see ``extend_claims``), and no other claim takes them meanwhile.
    A claim left by a process that died runs out, and the event is offered again (at
    least once across crashes).
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "FULL",
        claim_s: float = DEFAULT_CLAIM_S,
    ) -> None:
        self._claim_s = claim_s
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
        await self._run(_insert, event, claim_until(event, self._claim_s))

    async def claim_due(
        self, now: float, limit: int, exclude: Collection[str] = (), *, worker: str | None = None
    ) -> Claim:
        """Due pending events, oldest due first, each with one more attempt counted and
        on record."""
        claim = partial(_claim, worker=worker)
        return await self._run(claim, now, limit, frozenset(exclude), self._claim_s)

    async def settle(self, event: OutboxEvent) -> bool:
        """Writes the event's state; False if its row is gone."""
        return await self._run(_update, event)

    async def extend_claims(self, event_ids: Collection[str], now: float) -> None:
        """Claims of events still being delivered, kept for ``claim_s`` from ``now``."""
        if event_ids:
            await self._run(_extend, list(event_ids), now + self._claim_s)

    # --- AwaitedFiles ------------------------------------------------------------------

    async def awaited_files(self) -> frozenset[str]:
        """The names of the files that queued and pending events will send."""
        # No file yet, no event yet: an upload over the bound must not make the file.
        return await self._run_if_present(_awaited) or frozenset()

    # --- OutboxAdmin -------------------------------------------------------------------

    async def events(self, status: OutboxStatus | None = None) -> tuple[OutboxEvent, ...]:
        """Every event, or those with ``status``, oldest first."""
        return await self._run(_select, status)

    async def event(self, event_id: str) -> OutboxEvent:
        """The event with ``event_id``; NotFound for an unknown id."""
        return await self._run(_get, event_id)

    async def tally(self) -> OutboxTally:
        """Events per status and the oldest waiting one's creation time, from the index."""
        return await self._run(_tally)

    async def retry(self, event_id: str, now: float, *, force: bool = False) -> OutboxEvent:
        """The event made pending and due now; NotFound for an unknown id,
        InvalidRequest for a delivered one unless ``force``."""
        return await self._run(_retry, event_id, now, force)

    async def drop(self, event_id: str) -> OutboxEvent:
        """Deletes the event, returning it; NotFound for an unknown id."""
        return await self._run(_drop, event_id)


# --- in the worker thread ----------------------------------------------------------------


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    conn = connect_wal(
        path, synchronous=synchronous, schema=_SCHEMA, schema_version=_SCHEMA_VERSION
    )
    try:
        _upgrade(conn)
    except BaseException:
        conn.close()
        raise
    return conn


# Columns a file written by an earlier version lacks, in the order they came.
_ADDED_COLUMNS = (
    ("retried_from", "retried_from INTEGER NOT NULL DEFAULT 0"),  # schema 1
    ("claimed_until", "claimed_until REAL"),  # schema 1 or 2
    ("attempt_log", ATTEMPT_LOG_COLUMN),  # schema 1 or 2
)


def _upgrade(conn: sqlite3.Connection) -> None:
    """Adds what an older file lacks, in place, keeping its events. Looked at again
    under the write lock: two processes starting on one old file add each column once."""
    if _missing(conn):
        with immediate_transaction(conn):
            for definition in _missing(conn):
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {definition}")


def _missing(conn: sqlite3.Connection) -> list[str]:
    """The definitions of the columns the file lacks."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    return [definition for name, definition in _ADDED_COLUMNS if name not in columns]


def _insert(conn: sqlite3.Connection, event: OutboxEvent, until: float | None) -> None:
    conn.execute(_INSERT, (*event_row(event), until))


def _update(conn: sqlite3.Connection, event: OutboxEvent) -> bool:
    cursor = conn.execute(_UPDATE_STATE, state_row(event))
    return cursor.rowcount > 0


def _claim(
    conn: sqlite3.Connection,
    now: float,
    limit: int,
    exclude: frozenset[str],
    claim_s: float,
    *,
    worker: str | None,
) -> Claim:
    # One write transaction: the attempts and the claim are written in the same commit
    # that takes the events, so no reader (nor another process, nor a restart) sees an
    # event taken without them.
    with immediate_transaction(conn):
        cursor = conn.execute(
            f"SELECT {_COLUMNS}, claimed_until FROM outbox WHERE status = 'pending' "
            "ORDER BY next_attempt_at, rowid"
        )
        taken: list[OutboxEvent] = []
        next_due: float | None = None
        for row in cursor:
            if row[0] in exclude:  # the id: an event in flight here is not decoded
                continue
            event = row_event(row)
            due = event.next_attempt_at if event.next_attempt_at is not None else now
            ready = due if row[-1] is None else max(due, float(row[-1]))
            if ready <= now and len(taken) < limit:
                taken.append(claimed(event, now, worker))
                continue
            next_due = ready if next_due is None else min(next_due, ready)
            if due > now or ready <= now:
                break  # rows come in due order: none after is due; or the claim is full
        cursor.close()
        conn.executemany(
            "UPDATE outbox SET attempts = ?, attempt_log = ?, claimed_until = ? WHERE id = ?",
            [(e.attempts, log_json(e.attempt_log), now + claim_s, e.id) for e in taken],
        )
    return Claim(tuple(taken), next_due)


def _extend(conn: sqlite3.Connection, event_ids: list[str], until: float) -> None:
    conn.executemany(
        "UPDATE outbox SET claimed_until = ? WHERE id = ? AND status = 'pending'",
        [(until, event_id) for event_id in event_ids],
    )


def _select(conn: sqlite3.Connection, status: OutboxStatus | None) -> tuple[OutboxEvent, ...]:
    where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
    cursor = conn.execute(f"SELECT {_COLUMNS} FROM outbox {where} ORDER BY created_at, rowid", args)
    return tuple(row_event(row) for row in cursor)


def _awaited(conn: sqlite3.Connection) -> frozenset[str]:
    return media_names(conn.execute(AWAITED_MEDIA).fetchall())


def _tally(conn: sqlite3.Connection) -> OutboxTally:
    counts = conn.execute(TALLY_COUNTS).fetchall()
    (oldest,) = conn.execute(TALLY_OLDEST).fetchone()
    return tally_of(counts, oldest)


def _get(conn: sqlite3.Connection, event_id: str) -> OutboxEvent:
    return _read(conn, event_id)[0]


def _read(conn: sqlite3.Connection, event_id: str) -> tuple[OutboxEvent, float | None]:
    """The event and when its claim ends (None: not claimed)."""
    row = conn.execute(
        f"SELECT {_COLUMNS}, claimed_until FROM outbox WHERE id = ?", (event_id,)
    ).fetchone()
    if row is None:
        raise NotFound(f"No outbox event with id {event_id!r}", param="id")
    return row_event(row), None if row[-1] is None else float(row[-1])


def _retry(conn: sqlite3.Connection, event_id: str, now: float, force: bool) -> OutboxEvent:
    with immediate_transaction(conn):
        # Read in the same write transaction as the update: no claim can slip in between.
        event, until = _read(conn, event_id)
        event = retried(event, now, force=force, claimed_until=until)
        _update(conn, event)
    return event


def _drop(conn: sqlite3.Connection, event_id: str) -> OutboxEvent:
    with immediate_transaction(conn):
        event = _get(conn, event_id)
        conn.execute("DELETE FROM outbox WHERE id = ?", (event_id,))
    return event
