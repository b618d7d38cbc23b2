"""Session history in PostgreSQL: the same rows as the SQLite store (one per turn, its
messages as JSON, branches by ``parent_no`` and ``superseded``), shared by every
process and replica that uses the database.

A turn is written by one statement (a branch change by one transaction), so a reader
in any process sees all of a turn or none of it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_leases import PostgresSessionLeases
from nanobot_api.adapters.storage.turn_json import (
    decode_turn,
    encode_turn,
    ids_from_json,
    ids_json,
)
from nanobot_api.domain.branches import MessageIds, StoredTurn
from nanobot_api.domain.conversation import History, TurnRecord
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.sessions import Lease, SessionKey, lease_lost

# The next number is computed inside the INSERT from the primary key's index, and the
# turn follows the latest active one. With a lease token, the row lands only while that
# token is the session's lease; the lease row is share-locked until the commit ends, so
# a new holder's take (which updates that row) waits for this turn to be whole before
# it reads history.
_APPEND = (
    "WITH held AS (SELECT 1 FROM session_leases WHERE session_key = %(key)s "
    "AND token = %(token)s FOR SHARE) "
    "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at, parent_no) "
    "SELECT %(key)s, next_no, %(n)s, %(payload)s, %(now)s, parent FROM "
    "(SELECT COALESCE(MAX(turn_no), 0) + 1 AS next_no, MAX(turn_no) FILTER "
    "(WHERE NOT superseded) AS parent FROM turns WHERE session_key = %(key)s) AS numbered "
    "WHERE %(token)s::BIGINT IS NULL OR EXISTS (SELECT 1 FROM held) "
    "RETURNING turn_no, created_at"
)
# The active branch's newest whole turns whose messages add up to at most the bound.
_BOUNDED = (
    "SELECT turn_no, messages, created_at FROM ("
    " SELECT turn_no, messages, created_at,"
    "  SUM(n_messages) OVER (ORDER BY turn_no DESC) AS running"
    " FROM turns WHERE session_key = %s AND NOT superseded) AS newest "
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
        """The active branch's turns, oldest first; with ``max_messages``, the most
        recent whole turns holding at most that many messages."""
        name = str(key)
        async with self._db.connection() as conn:
            if max_messages is None:
                cursor = await conn.execute(
                    "SELECT turn_no, messages, created_at FROM turns WHERE session_key = %s "
                    "AND NOT superseded ORDER BY turn_no",
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

    def _committed(self, name: str, row: Sequence[Any], record: TurnRecord) -> None:
        """The turn just written is handed out as ``record`` itself from now on."""
        handed = dict(self._handed.get(name, {}))
        handed[int(row[0])] = (float(row[1]), record)
        self._keep(name, handed)

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, lease: Lease | None = None
    ) -> None:
        """Appends the turn to the active branch in one statement; durable on return.
        With ``lease``, only while it is the session's current one (else LeaseLost)."""
        import psycopg.errors

        name = str(key)
        args = {
            "key": name,
            "n": len(record.messages),
            "payload": encode_turn(record),
            "now": time.time(),
            "token": None if lease is None else lease.token,
        }
        async with self._db.connection() as conn:
            while True:
                try:
                    cursor = await conn.execute(_APPEND, args)
                except psycopg.errors.UniqueViolation:
                    # Two commits to one session at once (no lease held) took the same
                    # number: the statement failed whole, so the loser simply goes again.
                    continue
                break
            row = await cursor.fetchone()
        if row is None:
            raise lease_lost()
        self._committed(name, row, record)

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        """How many turns the active branch holds, and its latest (None if none)."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT COUNT(*), (SELECT messages FROM turns WHERE session_key = %(key)s "
                "AND NOT superseded ORDER BY turn_no DESC LIMIT 1) FROM turns "
                "WHERE session_key = %(key)s AND NOT superseded",
                {"key": str(key)},
            )
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), (None if row[1] is None else decode_turn(row[1]))

    async def turns(self, key: SessionKey) -> tuple[StoredTurn, ...]:
        """Every turn of the session, superseded ones included, oldest first."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT turn_no, parent_no, superseded, ids, messages FROM turns "
                "WHERE session_key = %s ORDER BY turn_no",
                (str(key),),
            )
            rows = await cursor.fetchall()
        return tuple(
            StoredTurn(int(no), parent, decode_turn(payload), bool(superseded), ids_from_json(ids))
            for no, parent, superseded, ids, payload in rows
        )

    async def commit_branch(
        self,
        key: SessionKey,
        kept: Sequence[int],
        imported: Sequence[TurnRecord],
        record: TurnRecord,
        ids: MessageIds,
        *,
        lease: Lease | None = None,
    ) -> None:
        """Makes ``kept`` the active branch and appends ``imported`` and ``record`` to it,
        in one transaction; durable on return; fenced by ``lease`` as ``commit``."""
        name = str(key)
        rows: list[tuple[int, str, str | None]] = [
            (len(r.messages), encode_turn(r), None) for r in imported
        ]
        rows.append((len(record.messages), encode_turn(record), ids_json(ids)))
        now = time.time()
        self._handed.pop(name, None)
        async with self._db.transaction() as conn:
            if lease is not None:
                cursor = await conn.execute(
                    "SELECT 1 FROM session_leases WHERE session_key = %s AND token = %s FOR SHARE",
                    (name, lease.token),
                )
                if await cursor.fetchone() is None:
                    raise lease_lost()
            # Only the turns whose state changes are written.
            await conn.execute(
                "UPDATE turns SET superseded = NOT superseded WHERE session_key = %s "
                "AND superseded = (turn_no = ANY(%s))",
                (name, list(kept)),
            )
            cursor = await conn.execute(
                "SELECT COALESCE(MAX(turn_no), 0) FROM turns WHERE session_key = %s", (name,)
            )
            found = await cursor.fetchone()
            last = int(found[0]) if found is not None else 0
            parent = max(kept, default=None)
            for n_messages, payload, each_ids in rows:
                last += 1
                await conn.execute(
                    "INSERT INTO turns (session_key, turn_no, n_messages, messages, "
                    "created_at, parent_no, ids) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (name, last, n_messages, payload, now, parent, each_ids),
                )
                parent = last

    async def clear(self, key: SessionKey) -> int:
        """Deletes every turn of the session; returns how many there were."""
        self._handed.pop(str(key), None)
        async with self._db.connection() as conn:
            cursor = await conn.execute("DELETE FROM turns WHERE session_key = %s", (str(key),))
            return cursor.rowcount

    async def forget_idle(self, key_prefix: str, idle_since: float) -> tuple[SessionKey, ...]:
        """Deletes the sessions under ``key_prefix`` idle since before ``idle_since``."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM turns WHERE session_key IN (SELECT session_key FROM turns "
                "WHERE starts_with(session_key, %s) GROUP BY session_key "
                "HAVING MAX(created_at) < %s) RETURNING session_key",
                (key_prefix, idle_since),
            )
            gone = {str(row[0]) for row in await cursor.fetchall()}
        for name in gone:
            self._handed.pop(name, None)
        return tuple(SessionKey.parse(name) for name in sorted(gone))

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` holding a turn, most recently changed first."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT session_key, COUNT(*) FILTER (WHERE NOT superseded), "
                "MIN(created_at), MAX(created_at) FROM turns "
                "WHERE starts_with(session_key, %s) GROUP BY session_key "
                "ORDER BY MAX(created_at) DESC, session_key",
                (f"{channel}:",),
            )
            rows = await cursor.fetchall()
        return tuple(
            SessionSummary(SessionKey.parse(str(key)), int(count), float(first), float(last))
            for key, count, first, last in rows
        )

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session holding an active turn, with its count of active turns."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT session_key, COUNT(*) FROM turns WHERE NOT superseded "
                "GROUP BY session_key ORDER BY session_key"
            )
            rows = await cursor.fetchall()
        return {SessionKey.parse(str(key)): int(count) for key, count in rows}
