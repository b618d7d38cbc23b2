"""Idempotency-Key records and rate-limit counters in ``<workspace>/requests.sqlite3``.

A file of their own, beside ``sessions.sqlite3``: a counter is written on every
request of a limited key, and keeping its write lock apart from the sessions' keeps
turn commits from queueing behind it. Every worker of one workspace opens the same
file, so the limits and the records hold across workers (PostgreSQL holds them across
machines). Each call is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from functools import partial
from pathlib import Path
from typing import NamedTuple

import anyio

from nanobot_api.adapters.storage.sqlite_files import (
    LazyConnection,
    SqliteFile,
    Synchronous,
    connect_wal,
    immediate_transaction,
)
from nanobot_api.domain.idempotency import Claimed, KeyClaim, StoredAnswer, decide

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    created_at   REAL NOT NULL,
    lease_until  REAL NOT NULL,
    status       INTEGER,
    content_type TEXT,
    body         BLOB,
    headers      TEXT,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS idempotency_age ON idempotency (created_at);
CREATE TABLE IF NOT EXISTS rate_counts (
    bucket       TEXT PRIMARY KEY,
    window_start REAL NOT NULL,
    count        INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS slots (
    bucket      TEXT NOT NULL,
    token       TEXT NOT NULL,
    lease_until REAL NOT NULL,
    PRIMARY KEY (bucket, token)
);
"""


class SqliteRequestRecords(SqliteFile):
    """An IdempotencyStore (with IdempotencyLeases) and LimitCounters in one SQLite file,
    in WAL mode."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        super().__init__(
            path,
            LazyConnection(
                partial(_connect, path, synchronous),
                "SqliteRequestRecords",
                limiter=anyio.CapacityLimiter(1),
            ),
        )

    # --- IdempotencyStore, IdempotencyLeases --------------------------------------------

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: float, lease_s: float, ttl_s: float
    ) -> KeyClaim:
        return await self._run(_claim, (scope, key), fingerprint, _Times(now, lease_s, ttl_s))

    async def finish(self, scope: str, key: str, answer: StoredAnswer) -> None:
        await self._run(_finish, scope, key, answer)

    async def abandon(self, scope: str, key: str) -> None:
        await self._run(_abandon, scope, key)

    async def renew(self, scope: str, key: str, until: float) -> None:
        await self._run(_renew, scope, key, until)

    # --- LimitCounters -----------------------------------------------------------------

    async def add(self, bucket: str, window_start: float) -> int:
        return await self._run(_add, bucket, window_start)

    async def count(self, bucket: str, window_start: float) -> int:
        return await self._run(_count, bucket, window_start)

    async def take_slot(
        self, bucket: str, token: str, limit: int, *, now: float, lease_s: float
    ) -> bool:
        return await self._run(_take_slot, (bucket, token), limit, _Times(now, lease_s))

    async def free_slot(self, bucket: str, token: str) -> None:
        await self._run(_free_slot, bucket, token)


# --- in the worker thread ----------------------------------------------------------------


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    return connect_wal(
        path, synchronous=synchronous, schema=_SCHEMA, schema_version=_SCHEMA_VERSION
    )


class _Times(NamedTuple):
    now: float
    lease_s: float
    ttl_s: float = 0.0


def _claim(
    conn: sqlite3.Connection, ident: tuple[str, str], fingerprint: str, times: _Times
) -> KeyClaim:
    (scope, key), (now, lease_s, ttl_s) = ident, times
    with immediate_transaction(conn):
        conn.execute("DELETE FROM idempotency WHERE created_at < ?", (now - ttl_s,))
        row = conn.execute(
            "SELECT fingerprint, lease_until, status, content_type, body, headers "
            "FROM idempotency "
            "WHERE scope = ? AND key = ?",
            (scope, key),
        ).fetchone()
        if row is None:
            conn.execute(
                "INSERT INTO idempotency (scope, key, fingerprint, created_at, lease_until) "
                "VALUES (?, ?, ?, ?, ?)",
                (scope, key, fingerprint, now, now + lease_s),
            )
            return Claimed()
        stored, lease_until, status, content_type, body, headers = row
        answer = None
        if status is not None:
            pairs = tuple((str(k), str(v)) for k, v in json.loads(headers or "[]"))
            answer = StoredAnswer(int(status), str(content_type), bytes(body), pairs)
        found = decide(str(stored), fingerprint, answer, float(lease_until), now)
        if isinstance(found, Claimed):  # the holder's lease ran out: take it over
            conn.execute(
                "UPDATE idempotency SET lease_until = ? WHERE scope = ? AND key = ?",
                (now + lease_s, scope, key),
            )
        return found


def _finish(conn: sqlite3.Connection, scope: str, key: str, answer: StoredAnswer) -> None:
    conn.execute(
        "UPDATE idempotency SET status = ?, content_type = ?, body = ?, headers = ? "
        "WHERE scope = ? AND key = ?",
        (
            answer.status,
            answer.content_type,
            answer.body,
            json.dumps([list(pair) for pair in answer.headers]),
            scope,
            key,
        ),
    )


def _abandon(conn: sqlite3.Connection, scope: str, key: str) -> None:
    conn.execute(
        "DELETE FROM idempotency WHERE scope = ? AND key = ? AND status IS NULL", (scope, key)
    )


def _renew(conn: sqlite3.Connection, scope: str, key: str, until: float) -> None:
    conn.execute(
        "UPDATE idempotency SET lease_until = ? WHERE scope = ? AND key = ? AND status IS NULL",
        (until, scope, key),
    )


def _add(conn: sqlite3.Connection, bucket: str, window_start: float) -> int:
    # One statement: a newer window replaces the bucket's old one, else the count grows
    # (a late event stamped with an earlier window counts in the newer one).
    row = conn.execute(
        "INSERT INTO rate_counts (bucket, window_start, count) VALUES (?, ?, 1) "
        "ON CONFLICT (bucket) DO UPDATE SET "
        "count = CASE WHEN excluded.window_start > window_start THEN 1 ELSE count + 1 END, "
        "window_start = max(window_start, excluded.window_start) "
        "RETURNING count",
        (bucket, window_start),
    ).fetchone()
    return int(row[0])


def _count(conn: sqlite3.Connection, bucket: str, window_start: float) -> int:
    row = conn.execute(
        "SELECT count FROM rate_counts WHERE bucket = ? AND window_start = ?",
        (bucket, window_start),
    ).fetchone()
    return 0 if row is None else int(row[0])


def _take_slot(conn: sqlite3.Connection, ident: tuple[str, str], limit: int, times: _Times) -> bool:
    (bucket, token), (now, lease_s, _) = ident, times
    with immediate_transaction(conn):
        conn.execute("DELETE FROM slots WHERE bucket = ? AND lease_until <= ?", (bucket, now))
        (held,) = conn.execute(
            "SELECT COUNT(*) FROM slots WHERE bucket = ? AND token != ?", (bucket, token)
        ).fetchone()
        if held >= limit:
            return False
        conn.execute(
            "INSERT OR REPLACE INTO slots (bucket, token, lease_until) VALUES (?, ?, ?)",
            (bucket, token, now + lease_s),
        )
        return True


def _free_slot(conn: sqlite3.Connection, bucket: str, token: str) -> None:
    conn.execute("DELETE FROM slots WHERE bucket = ? AND token = ?", (bucket, token))
