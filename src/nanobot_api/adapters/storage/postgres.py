"""Session history in PostgreSQL: the same rows as the SQLite store, shared by every
process and replica that uses the database.

One row per turn holds the turn's messages as JSON, written by one statement, so a
reader in any process sees all of a turn or none of it.
"""

from __future__ import annotations

import time

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.turn_json import decode_turn, encode_turn
from nanobot_api.domain.conversation import History, TurnRecord
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.sessions import SessionKey

# The next number is computed inside the INSERT from the primary key's index; numbers
# run 1..n without gaps (a session is only ever cleared whole), so MAX is the count.
_APPEND = (
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
    "SELECT %(key)s, COALESCE(MAX(turn_no), 0) + 1, %(n)s, %(payload)s, %(now)s "
    "FROM turns WHERE session_key = %(key)s"
)
_REPLACE_LAST = (
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
    "SELECT %(key)s, COALESCE(MAX(turn_no), 1), %(n)s, %(payload)s, %(now)s "
    "FROM turns WHERE session_key = %(key)s "
    "ON CONFLICT (session_key, turn_no) DO UPDATE SET n_messages = EXCLUDED.n_messages, "
    "messages = EXCLUDED.messages, created_at = EXCLUDED.created_at"
)
# The newest whole turns whose messages add up to at most the bound, oldest first, and
# the session's count of turns, in one round trip.
_BOUNDED = (
    "SELECT turn_no, messages, total FROM ("
    " SELECT turn_no, messages, MAX(turn_no) OVER () AS total,"
    "  SUM(n_messages) OVER (ORDER BY turn_no DESC) AS running"
    " FROM turns WHERE session_key = %s) AS newest "
    "WHERE running <= %s ORDER BY turn_no"
)


class PostgresSessionStore:
    """A SessionStore in a PostgreSQL database (see :class:`PostgresDatabase`)."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """Committed turns, oldest first; with ``max_messages``, the most recent whole
        turns holding at most that many messages."""
        async with self._db.connection() as conn:
            if max_messages is None:
                cursor = await conn.execute(
                    "SELECT messages FROM turns WHERE session_key = %s ORDER BY turn_no",
                    (str(key),),
                )
            else:
                cursor = await conn.execute(_BOUNDED, (str(key), max_messages))
            rows = await cursor.fetchall()
        return tuple(decode_turn(row[1] if max_messages is not None else row[0]) for row in rows)

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, replace_last: bool = False
    ) -> None:
        """Appends the turn (or replaces the latest) in one statement; durable on return."""
        args = {
            "key": str(key),
            "n": len(record.messages),
            "payload": encode_turn(record),
            "now": time.time(),
        }
        import psycopg.errors

        statement = _REPLACE_LAST if replace_last else _APPEND
        async with self._db.connection() as conn:
            while True:
                try:
                    await conn.execute(statement, args)
                except psycopg.errors.UniqueViolation:
                    # Two commits to one session at once (no lease held) took the same
                    # number: the statement failed whole, so the loser simply goes again.
                    continue
                break

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
