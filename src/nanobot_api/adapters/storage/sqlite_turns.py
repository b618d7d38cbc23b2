"""The ``turns`` table of ``sessions.sqlite3``: its schema (and the step from schema 1),
and every statement the session store runs on it.

Each function takes the store's one connection: called in the connection's worker
thread, or on the event loop for a commit that must not wait (see
``SqliteSessionStore``). One row per turn holds the turn's messages as JSON, so a turn
is written by a single INSERT in its own transaction: a reader, a crash or a ``kill -9``
sees all of a turn or none of it. Rows are keyed by ``(session_key, turn_no)``; every
query walks that key, so the cost of a turn stays flat however many turns and sessions
the file holds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from nanobot_api.adapters.storage.sqlite_files import (
    BUSY_TIMEOUT_MS,
    Synchronous,
    Unavailable,
    connect_wal,
)
from nanobot_api.adapters.storage.sqlite_leases import SCHEMA as LEASES_SCHEMA
from nanobot_api.adapters.storage.turn_json import decode_turn, ids_from_json
from nanobot_api.domain.branches import StoredTurn
from nanobot_api.domain.conversation import History, TurnRecord
from nanobot_api.domain.sessions import SessionKey, lease_lost

_T = TypeVar("_T")
_SCHEMA_VERSION = 2
# parent_no: the turn before this one on its branch; superseded: 1 once a front end
# showed another branch (see domain/branches.py); ids: the front end's message ids.
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS turns (
    session_key TEXT NOT NULL,
    turn_no     INTEGER NOT NULL,
    n_messages  INTEGER NOT NULL,
    messages    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    parent_no   INTEGER,
    superseded  INTEGER NOT NULL DEFAULT 0,
    ids         TEXT,
    PRIMARY KEY (session_key, turn_no)
) WITHOUT ROWID;
"""
    + LEASES_SCHEMA
)
# A file of schema 1 held one branch per session, numbered 1..n.
_FROM_SCHEMA_1 = (
    "ALTER TABLE turns ADD COLUMN parent_no INTEGER",
    "ALTER TABLE turns ADD COLUMN superseded INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE turns ADD COLUMN ids TEXT",
    "UPDATE turns SET parent_no = turn_no - 1 WHERE turn_no > 1",
)


def history(conn: sqlite3.Connection, key: str, max_messages: int | None) -> History:
    """The active branch, or its most recent whole turns within ``max_messages``."""
    if max_messages is None:
        cursor = conn.execute(
            "SELECT messages FROM turns WHERE session_key = ? AND superseded = 0 ORDER BY turn_no",
            (key,),
        )
        return tuple(decode_turn(row[0]) for row in cursor)
    kept: list[TurnRecord] = []
    count = 0
    cursor = conn.execute(
        "SELECT n_messages, messages FROM turns WHERE session_key = ? AND superseded = 0 "
        "ORDER BY turn_no DESC",
        (key,),
    )
    for n_messages, payload in cursor:
        count += n_messages
        if count > max_messages:
            break
        kept.append(decode_turn(payload))
    cursor.close()
    return tuple(reversed(kept))


def commit(
    conn: sqlite3.Connection, key: str, n_messages: int, payload: str, fence: int | None
) -> None:
    # One statement in autocommit mode is one transaction: the whole turn or
    # nothing. The turn number comes from the primary key's index inside that
    # statement, so two writers could never take the same one; the turn follows
    # the latest active one.
    # With a fence, the row lands only while that token is the session's lease.
    cursor = conn.execute(
        "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at, "
        "parent_no) SELECT ?1, next_no, ?2, ?3, ?4, parent FROM (SELECT "
        "COALESCE(MAX(turn_no), 0) + 1 AS next_no, "
        "(SELECT MAX(turn_no) FROM turns WHERE session_key = ?1 AND superseded = 0) "
        "AS parent FROM turns WHERE session_key = ?1) WHERE ?5 IS NULL OR EXISTS "
        "(SELECT 1 FROM session_leases WHERE session_key = ?1 AND token = ?5)",
        (key, n_messages, payload, time.time(), fence),
    )
    if cursor.rowcount == 0:
        raise lease_lost()


def last_turn(conn: sqlite3.Connection, key: str) -> tuple[int, TurnRecord | None]:
    row = conn.execute(
        "SELECT COUNT(*), (SELECT messages FROM turns WHERE session_key = ?1 AND "
        "superseded = 0 ORDER BY turn_no DESC LIMIT 1) FROM turns "
        "WHERE session_key = ?1 AND superseded = 0",
        (key,),
    ).fetchone()
    return int(row[0]), (None if row[1] is None else decode_turn(row[1]))


def turns(conn: sqlite3.Connection, key: str) -> tuple[StoredTurn, ...]:
    cursor = conn.execute(
        "SELECT turn_no, parent_no, superseded, ids, messages FROM turns "
        "WHERE session_key = ? ORDER BY turn_no",
        (key,),
    )
    return tuple(
        StoredTurn(int(no), parent, decode_turn(payload), bool(superseded), ids_from_json(ids))
        for no, parent, superseded, ids, payload in cursor
    )


def commit_branch(
    conn: sqlite3.Connection,
    key: str,
    kept: str,
    rows: list[tuple[int, str, str | None]],
    fence: int | None,
) -> None:
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
        check_fence(conn, key, fence)
        # Only the turns whose state changes are written (none, for a new turn
        # on the active branch).
        conn.execute(
            "UPDATE turns SET superseded = 1 - superseded WHERE session_key = ?1 AND "
            "superseded != (turn_no NOT IN (SELECT value FROM json_each(?2)))",
            (key, kept),
        )
        parent = max(json.loads(kept), default=None)
        (last,) = conn.execute(
            "SELECT COALESCE(MAX(turn_no), 0) FROM turns WHERE session_key = ?", (key,)
        ).fetchone()
        for n_messages, payload, ids in rows:
            last += 1
            conn.execute(
                "INSERT INTO turns (session_key, turn_no, n_messages, messages, "
                "created_at, parent_no, ids) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, last, n_messages, payload, now, parent, ids),
            )
            parent = last
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def clear(conn: sqlite3.Connection, key: str) -> int:
    return conn.execute("DELETE FROM turns WHERE session_key = ?", (key,)).rowcount


def forget_idle(conn: sqlite3.Connection, prefix: str, idle_since: float) -> tuple[SessionKey, ...]:
    # A range over the primary key finds the prefix's sessions without a scan.
    end = prefix + "\U0010ffff"
    cursor = conn.execute(
        "DELETE FROM turns WHERE session_key IN (SELECT session_key FROM turns "
        "WHERE session_key >= ?1 AND session_key < ?2 GROUP BY session_key "
        "HAVING MAX(created_at) < ?3) RETURNING session_key",
        (prefix, end, idle_since),
    )
    return tuple(SessionKey.parse(name) for name in sorted({row[0] for row in cursor}))


def summaries(conn: sqlite3.Connection, channel: str) -> list[tuple[str, int, float, float]]:
    # ':' + 1 is ';': the range holds exactly the keys that begin with 'channel:'.
    cursor = conn.execute(
        "SELECT session_key, SUM(1 - superseded), MIN(created_at), MAX(created_at) "
        "FROM turns WHERE session_key >= ? AND session_key < ? GROUP BY session_key "
        "ORDER BY MAX(created_at) DESC, session_key",
        (f"{channel}:", f"{channel};"),
    )
    return list(cursor)


def sessions(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    cursor = conn.execute(
        "SELECT session_key, COUNT(*) FROM turns WHERE superseded = 0 "
        "GROUP BY session_key ORDER BY session_key"
    )
    return [(str(key), int(count)) for key, count in cursor]


def checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what it can without waiting for readers or writers.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def check_fence(conn: sqlite3.Connection, key: str, fence: int | None) -> None:
    """Raises LeaseLost unless ``fence`` (if any) is still the session's lease token."""
    if (
        fence is not None
        and not conn.execute(
            "SELECT 1 FROM session_leases WHERE session_key = ? AND token = ?", (key, fence)
        ).fetchone()
    ):
        raise lease_lost()


def without_waiting(
    conn: sqlite3.Connection, func: Callable[..., _T], *args: object
) -> _T | Unavailable:
    """``func(conn, *args)``, or LOCKED if another process holds the file's write lock.

    The connection's busy timeout is 0 outside the worker thread, so this never waits;
    a write that found the file locked wrote nothing (its transaction rolled back).
    """
    try:
        return func(conn, *args)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return Unavailable.LOCKED  # another process is writing: wait for it in the thread


def with_version(
    conn: sqlite3.Connection, func: Callable[..., _T], *args: object
) -> tuple[int, _T]:
    # Only the worker thread may wait for another process's lock (see connect).
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return data_version(conn), func(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def versioned(conn: sqlite3.Connection, func: Callable[..., _T], *args: object) -> tuple[int, _T]:
    """``func(conn, *args)`` with the ``data_version`` it was read at (as ``with_version``,
    for a read on the event loop, which never waits)."""
    return data_version(conn), func(conn, *args)


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    # Checkpoints run in the worker thread (see SqliteSessionStore), never in a commit.
    conn = connect_wal(
        path,
        synchronous=synchronous,
        schema=_SCHEMA,
        schema_version=_SCHEMA_VERSION,
        autocheckpoint=False,
    )
    # Whatever uses the connection on the event loop must never wait on the file; the
    # worker thread sets a timeout around each of its calls. Toggling it around every
    # loop commit instead cost two statements per turn.
    columns = {row[1] for row in conn.execute("PRAGMA table_info(turns)")}
    if "superseded" not in columns:
        conn.execute("BEGIN IMMEDIATE")
        for statement in _FROM_SCHEMA_1:
            conn.execute(statement)
        conn.execute("COMMIT")
    conn.execute("PRAGMA busy_timeout=0")
    return conn
