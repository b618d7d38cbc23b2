"""Idempotency-Key records and rate-limit counters in PostgreSQL (the ``0102-requests``
migration), so a replay, a key's ``rpm`` and the turns-at-once limits hold across every
worker and every replica using the database.

Each call is one transaction. Two things need more than one statement and are
serialized with a transaction-scoped advisory lock: a claim of one Idempotency-Key (as
SQLite's ``BEGIN IMMEDIATE`` serializes it there), and taking one of a bucket's slots
(count, then insert). Times are the callers' clocks, as on SQLite: replicas are
expected to keep theirs in step (NTP); a slot or claim of a dead process expires with
its lease either way.
"""

from __future__ import annotations

import json
from typing import Any

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.domain.idempotency import Claimed, KeyClaim, StoredAnswer, decide

# The first key of the two-int advisory locks taken here ("rq" in ASCII): a key space
# apart from the sessions' one-bigint locks (PostgreSQL keeps the two forms apart).
_LOCKS = 0x7271
_SELECT = (
    "SELECT fingerprint, lease_until, status, content_type, body, headers "
    "FROM idempotency WHERE scope = %s AND key = %s AND created_at >= %s"
)


class PostgresRequestRecords:
    """An IdempotencyStore (with IdempotencyLeases) and LimitCounters in a PostgreSQL
    database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    # --- IdempotencyStore, IdempotencyLeases --------------------------------------------

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: float, lease_s: float, ttl_s: float
    ) -> KeyClaim:
        oldest = now - ttl_s
        async with self._db.transaction() as conn:
            await conn.execute(
                "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCKS, f"{scope}\n{key}")
            )
            # Forgetting old records is housekeeping: rows another claim is sweeping
            # are skipped rather than waited for (the SELECT below ignores them).
            await conn.execute(
                "DELETE FROM idempotency WHERE (scope, key) IN (SELECT scope, key "
                "FROM idempotency WHERE created_at < %s FOR UPDATE SKIP LOCKED)",
                (oldest,),
            )
            cursor = await conn.execute(_SELECT, (scope, key, oldest))
            row = await cursor.fetchone()
            if row is None:
                # An expired record skipped by the sweep is replaced in place.
                await conn.execute(
                    "INSERT INTO idempotency (scope, key, fingerprint, created_at, lease_until) "
                    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (scope, key) DO UPDATE SET "
                    "fingerprint = excluded.fingerprint, created_at = excluded.created_at, "
                    "lease_until = excluded.lease_until, status = NULL, content_type = NULL, "
                    "body = NULL, headers = NULL",
                    (scope, key, fingerprint, now, now + lease_s),
                )
                return Claimed()
            found = decide(str(row[0]), fingerprint, _answer(row), float(row[1]), now)
            if isinstance(found, Claimed):  # the holder's lease ran out: take it over
                await conn.execute(
                    "UPDATE idempotency SET lease_until = %s WHERE scope = %s AND key = %s",
                    (now + lease_s, scope, key),
                )
            return found

    async def finish(self, scope: str, key: str, answer: StoredAnswer) -> None:
        headers = json.dumps([list(pair) for pair in answer.headers])
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE idempotency SET status = %s, content_type = %s, body = %s, headers = %s "
                "WHERE scope = %s AND key = %s",
                (answer.status, answer.content_type, answer.body, headers, scope, key),
            )

    async def abandon(self, scope: str, key: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "DELETE FROM idempotency WHERE scope = %s AND key = %s AND status IS NULL",
                (scope, key),
            )

    async def renew(self, scope: str, key: str, until: float) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "UPDATE idempotency SET lease_until = %s "
                "WHERE scope = %s AND key = %s AND status IS NULL",
                (until, scope, key),
            )

    # --- LimitCounters -----------------------------------------------------------------

    async def add(self, bucket: str, window_start: float) -> int:
        # One statement (the upsert locks the row). A late event stamped with an earlier
        # window (another replica's clock a little behind) counts in the newer one
        # rather than sending the bucket back to its old window.
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO rate_counts AS r (bucket, window_start, count) "
                "VALUES (%s, %s, 1) ON CONFLICT (bucket) DO UPDATE SET "
                "count = CASE WHEN excluded.window_start > r.window_start THEN 1 "
                "ELSE r.count + 1 END, "
                "window_start = GREATEST(r.window_start, excluded.window_start) "
                "RETURNING count",
                (bucket, window_start),
            )
            row = await cursor.fetchone()
        assert row is not None  # an upsert with RETURNING always returns its row
        return int(row[0])

    async def count(self, bucket: str, window_start: float) -> int:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT count FROM rate_counts WHERE bucket = %s AND window_start = %s",
                (bucket, window_start),
            )
            row = await cursor.fetchone()
        return 0 if row is None else int(row[0])

    async def take_slot(
        self, bucket: str, token: str, limit: int, *, now: float, lease_s: float
    ) -> bool:
        async with self._db.transaction() as conn:
            # One taker of a bucket's slots at a time, on every machine: else two could
            # both count limit-1 and both insert.
            await conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_LOCKS, bucket))
            # A slot whose holder died (no free_slot) ends with its lease.
            await conn.execute(
                "DELETE FROM slots WHERE bucket = %s AND lease_until <= %s", (bucket, now)
            )
            cursor = await conn.execute(
                "SELECT COUNT(*) FROM slots WHERE bucket = %s AND token <> %s", (bucket, token)
            )
            row = await cursor.fetchone()
            if row is not None and int(row[0]) >= limit:
                return False
            await conn.execute(
                "INSERT INTO slots (bucket, token, lease_until) VALUES (%s, %s, %s) "
                "ON CONFLICT (bucket, token) DO UPDATE SET lease_until = excluded.lease_until",
                (bucket, token, now + lease_s),
            )
            return True

    async def free_slot(self, bucket: str, token: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                "DELETE FROM slots WHERE bucket = %s AND token = %s", (bucket, token)
            )


def _answer(row: tuple[Any, ...]) -> StoredAnswer | None:
    status, content_type, body, headers = row[2:]
    if status is None:
        return None
    pairs = tuple((str(k), str(v)) for k, v in json.loads(headers or "[]"))
    return StoredAnswer(int(status), str(content_type), bytes(body), pairs)
