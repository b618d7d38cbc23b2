"""Session history in PostgreSQL: the same rows as the SQLite store, shared by every
process and replica that uses the database.

One row per turn holds the turn's messages as JSON, written by one statement, so a
reader in any process sees all of a turn or none of it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_leases import PostgresSessionLeases
from nanobot_api.adapters.storage.turn_json import decode_turn, encode_turn
from nanobot_api.domain.conversation import History, TurnRecord
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.sessions import Lease, SessionKey, lease_lost

# The next number is computed inside the INSERT from the primary key's index; numbers
# run 1..n without gaps (a session is only ever cleared whole), so MAX is the count.
_APPEND = (
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
    "SELECT %(key)s, COALESCE(MAX(turn_no), 0) + 1, %(n)s, %(payload)s, %(now)s "
    "FROM turns WHERE session_key = %(key)s"
    " RETURNING turn_no, created_at"
)
_REPLACE_LAST = (
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
    "SELECT %(key)s, COALESCE(MAX(turn_no), 1), %(n)s, %(payload)s, %(now)s "
    "FROM turns WHERE session_key = %(key)s "
    "ON CONFLICT (session_key, turn_no) DO UPDATE SET n_messages = EXCLUDED.n_messages, "
    "messages = EXCLUDED.messages, created_at = EXCLUDED.created_at"
    " RETURNING turn_no, created_at"
)
# With a lease, the turn lands only while the lease's token is the session's current
# one; the lease row is share-locked until the commit ends, so a new holder's take
# (which updates that row) waits for this turn to be whole before reading history.
_FENCED_APPEND = (
    "WITH held AS (SELECT 1 FROM session_leases WHERE session_key = %(key)s "
    "AND token = %(token)s FOR SHARE) "
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
    "SELECT %(key)s, next_no, %(n)s, %(payload)s, %(now)s FROM "
    "(SELECT COALESCE(MAX(turn_no), 0) + 1 AS next_no FROM turns "
    "WHERE session_key = %(key)s) AS numbered WHERE EXISTS (SELECT 1 FROM held)"
    " RETURNING turn_no, created_at"
)
_FENCED_REPLACE_LAST = (
    "WITH held AS (SELECT 1 FROM session_leases WHERE session_key = %(key)s "
    "AND token = %(token)s FOR SHARE) "
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
    "SELECT %(key)s, next_no, %(n)s, %(payload)s, %(now)s FROM "
    "(SELECT COALESCE(MAX(turn_no), 1) AS next_no FROM turns "
    "WHERE session_key = %(key)s) AS numbered WHERE EXISTS (SELECT 1 FROM held) "
    "ON CONFLICT (session_key, turn_no) DO UPDATE SET n_messages = EXCLUDED.n_messages, "
    "messages = EXCLUDED.messages, created_at = EXCLUDED.created_at"
    " RETURNING turn_no, created_at"
)
# The newest whole turns whose messages add up to at most the bound, oldest first, and
# the session's count of turns, in one round trip.
_BOUNDED = (
    "SELECT turn_no, messages, created_at FROM ("
    " SELECT turn_no, messages, created_at,"
    "  SUM(n_messages) OVER (ORDER BY turn_no DESC) AS running"
    " FROM turns WHERE session_key = %s) AS newest "
    "WHERE running <= %s ORDER BY turn_no"
)


class PostgresSessionStore(PostgresSessionLeases):
    """A SessionStore and SessionLeases in a PostgreSQL database (see
    :class:`PostgresDatabase` and :mod:`postgres_leases`)."""

    def __init__(
        self, db: PostgresDatabase, *, lease_s: float = 30.0, cached_sessions: int = 256
    ) -> None:
        super().__init__(db, lease_s=lease_s)
        # Turns handed out, per session (most recently used last), by number, with the
        # row's created_at: a read hands out the same object again while the row is
        # unchanged (the identity contract of SessionStore.history); the rows are still
        # read every time, since another replica may have written.
        self._handed: OrderedDict[str, dict[int, tuple[float, TurnRecord]]] = OrderedDict()
        self._cached_sessions = cached_sessions

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """Committed turns, oldest first; with ``max_messages``, the most recent whole
        turns holding at most that many messages."""
        name = str(key)
        async with self._db.connection() as conn:
            if max_messages is None:
                cursor = await conn.execute(
                    "SELECT turn_no, messages, created_at FROM turns WHERE session_key = %s "
                    "ORDER BY turn_no",
                    (name,),
                )
            else:
                cursor = await conn.execute(_BOUNDED, (name, max_messages))
            rows = await cursor.fetchall()
        known = self._handed.get(name, {})
        handed: dict[int, tuple[float, TurnRecord]] = {}
        for turn_no, payload, created in rows:
            seen = known.get(turn_no)
            if seen is not None and seen[0] == created:
                handed[turn_no] = seen
            else:
                handed[turn_no] = (created, decode_turn(payload))
        self._keep(name, handed)
        return tuple(record for _, record in handed.values())

    def _keep(self, name: str, handed: dict[int, tuple[float, TurnRecord]]) -> None:
        self._handed[name] = handed
        self._handed.move_to_end(name)
        while len(self._handed) > self._cached_sessions:
            self._handed.popitem(last=False)

    def _committed(self, name: str, row: Sequence[Any] | None, record: TurnRecord) -> None:
        """The turn just written is handed out as ``record`` itself from now on."""
        if row is None:
            return
        handed = dict(self._handed.get(name, {}))
        handed[int(row[0])] = (float(row[1]), record)
        self._keep(name, handed)

    async def commit(
        self,
        key: SessionKey,
        record: TurnRecord,
        *,
        replace_last: bool = False,
        lease: Lease | None = None,
    ) -> None:
        """Appends the turn (or replaces the latest) in one statement; durable on return.
        With ``lease``, only while it is the session's current one (else LeaseLost)."""
        args = {
            "key": str(key),
            "n": len(record.messages),
            "payload": encode_turn(record),
            "now": time.time(),
            "token": None if lease is None else lease.token,
        }
        import psycopg.errors

        if lease is not None:
            statement = _FENCED_REPLACE_LAST if replace_last else _FENCED_APPEND
            async with self._db.connection() as conn:
                cursor = await conn.execute(statement, args)
                row = await cursor.fetchone()
            if row is None:
                raise lease_lost()
            self._committed(str(key), row, record)
            return
        statement = _REPLACE_LAST if replace_last else _APPEND
        async with self._db.connection() as conn:
            while True:
                try:
                    cursor = await conn.execute(statement, args)
                except psycopg.errors.UniqueViolation:
                    # Two commits to one session at once (no lease held) took the same
                    # number: the statement failed whole, so the loser simply goes again.
                    continue
                break
            row = await cursor.fetchone()
        self._committed(str(key), row, record)

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        """How many turns the session holds, and the latest (None if none)."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT turn_no, messages FROM turns WHERE session_key = %s "
                "ORDER BY turn_no DESC LIMIT 1",
                (str(key),),
            )
            row = await cursor.fetchone()
        return (0, None) if row is None else (int(row[0]), decode_turn(row[1]))

    async def clear(self, key: SessionKey) -> int:
        """Deletes every turn of the session; returns how many there were."""
        self._handed.pop(str(key), None)
        async with self._db.connection() as conn:
            cursor = await conn.execute("DELETE FROM turns WHERE session_key = %s", (str(key),))
            return cursor.rowcount

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` holding a turn, most recently changed first."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT session_key, COUNT(*), MIN(created_at), MAX(created_at) FROM turns "
                "WHERE session_key >= %s AND session_key < %s GROUP BY session_key "
                "ORDER BY MAX(created_at) DESC, session_key",
                (f"{channel}:", f"{channel};"),
            )
            rows = await cursor.fetchall()
        return tuple(
            SessionSummary(SessionKey.parse(str(key)), int(count), float(first), float(last))
            for key, count, first, last in rows
        )

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session holding a turn, with its count of turns."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT session_key, COUNT(*) FROM turns GROUP BY session_key ORDER BY session_key"
            )
            rows = await cursor.fetchall()
        return {SessionKey.parse(str(key)): int(count) for key, count in rows}
