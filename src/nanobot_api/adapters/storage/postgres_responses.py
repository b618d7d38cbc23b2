"""Responses, their steps and conversation records in PostgreSQL: what one replica
writes, every other reads (a background response is followed and cancelled from any).

The same rows as ``sqlite_responses.py``, written with the same codec; every write is
one statement (or one transaction), durable on return.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.response_codec import (
    record_from_row,
    record_json,
    step_from_json,
    step_json,
)
from nanobot_api.domain.conversations import ConversationRecord
from nanobot_api.domain.responses import ResponseRecord, ResponseStep
from nanobot_api.domain.sessions import SessionKey

_COLUMNS = "id, session_key, created_at, status, cancel_requested, body, alive_until"
_RUNNING = "status IN ('queued', 'in_progress')"
# domain.responses.forgettable, for rows made before %(before)s.
_FORGETTABLE = (
    f"created_at < %(before)s AND (NOT ({_RUNNING}) OR alive_until IS NULL "
    "OR alive_until < %(before)s)"
)
# The cancel flag belongs to whoever asked for it: a put never clears it. Nor does it
# move alive_until, which only the running process's keep_alive renews.
_PUT = (
    f"INSERT INTO responses ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, body = EXCLUDED.body, "
    "cancel_requested = responses.cancel_requested OR EXCLUDED.cancel_requested"
)


class PostgresResponseStore:
    """A ResponseStore, ResponseLog, RunLiveness and PausedCalls in a PostgreSQL database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def put(self, record: ResponseRecord) -> None:
        args = (
            record.id,
            str(record.session),
            record.created_at,
            record.status,
            record.cancel_requested,
            record_json(record),
            record.alive_until,
        )
        async with self._db.connection() as conn:
            await conn.execute(_PUT, args)

    async def get(self, response_id: str) -> ResponseRecord | None:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE id = %s", (response_id,)
            )
            row = await cursor.fetchone()
        return None if row is None else record_from_row(row)

    async def delete(self, response_id: str) -> bool:
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM response_steps WHERE response_id = %s", (response_id,))
            cursor = await conn.execute("DELETE FROM responses WHERE id = %s", (response_id,))
            return cursor.rowcount > 0

    async def request_cancel(self, response_id: str) -> ResponseRecord | None:
        async with self._db.connection() as conn:
            await conn.execute(
                f"UPDATE responses SET cancel_requested = TRUE WHERE id = %s AND {_RUNNING}",
                (response_id,),
            )
        return await self.get(response_id)

    async def latest(self, session: SessionKey) -> ResponseRecord | None:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                f"SELECT {_COLUMNS} FROM responses WHERE session_key = %s "
                "ORDER BY seq DESC LIMIT 1",
                (str(session),),
            )
            row = await cursor.fetchone()
        return None if row is None else record_from_row(row)

    async def append(self, response_id: str, first: int, steps: Sequence[ResponseStep]) -> None:
        rows = [(response_id, first + i, step_json(s)) for i, s in enumerate(steps)]
        if not rows:
            return
        async with self._db.transaction() as conn, conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO response_steps (response_id, step_no, step) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                rows,
            )

    async def read(self, response_id: str, after: int = -1) -> tuple[ResponseStep, ...]:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT step FROM response_steps WHERE response_id = %s AND step_no > %s "
                "ORDER BY step_no",
                (response_id, after),
            )
            rows = await cursor.fetchall()
        return tuple(step_from_json(row[0]) for row in rows)

    async def keep_alive(self, response_id: str, until: float) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                f"UPDATE responses SET alive_until = %s WHERE id = %s AND {_RUNNING}",
                (until, response_id),
            )

    async def interrupt(self, record: ResponseRecord, now: float) -> bool:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                f"UPDATE responses SET status = %s, body = %s WHERE id = %s AND {_RUNNING} "
                "AND alive_until < %s",
                (record.status, record_json(record), record.id, now),
            )
            return cursor.rowcount > 0

    async def note(self, session: SessionKey, call_ids: Sequence[str]) -> None:
        key = str(session)
        async with self._db.transaction() as conn:
            await conn.execute("DELETE FROM paused_calls WHERE session_key = %s", (key,))
            if call_ids:
                async with conn.cursor() as cursor:
                    await cursor.executemany(
                        "INSERT INTO paused_calls (call_id, session_key) VALUES (%s, %s)",
                        [(call_id, key) for call_id in call_ids],
                    )

    async def find(self, call_ids: Sequence[str], channel: str) -> SessionKey | None:
        if not call_ids:
            return None
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT session_key FROM paused_calls WHERE call_id = ANY(%s) "
                "AND session_key >= %s AND session_key < %s ORDER BY seq DESC LIMIT 1",
                (list(call_ids), f"{channel}:", f"{channel};"),
            )
            row = await cursor.fetchone()
        return None if row is None else SessionKey.parse(str(row[0]))

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        args = {"keys": sorted(str(key) for key in sessions), "before": made_before}
        mine = f"session_key = ANY(%(keys)s) AND {_FORGETTABLE}"
        async with self._db.transaction() as conn:
            await conn.execute(
                f"DELETE FROM response_steps WHERE response_id IN (SELECT id FROM responses "
                f"WHERE {mine})",
                args,
            )
            cursor = await conn.execute(f"DELETE FROM responses WHERE {mine}", args)
            await conn.execute("DELETE FROM paused_calls WHERE session_key = ANY(%(keys)s)", args)
            return cursor.rowcount

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT session_key FROM responses WHERE starts_with(session_key, %(prefix)s) "
                f"AND {_FORGETTABLE} UNION SELECT session_key FROM paused_calls "
                "WHERE starts_with(session_key, %(prefix)s) ORDER BY 1",
                {"prefix": key_prefix, "before": made_before},
            )
            rows = await cursor.fetchall()
        return tuple(SessionKey.parse(str(row[0])) for row in rows)


class PostgresConversationStore:
    """A ConversationStore in a PostgreSQL database."""

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    async def put(self, record: ConversationRecord) -> None:
        metadata = json.dumps(dict(record.metadata), ensure_ascii=False)
        async with self._db.connection() as conn:
            await conn.execute(
                "INSERT INTO conversations (session_key, created_at, metadata) "
                "VALUES (%s, %s, %s) ON CONFLICT (session_key) DO UPDATE SET "
                "created_at = EXCLUDED.created_at, metadata = EXCLUDED.metadata",
                (str(record.session), record.created_at, metadata),
            )

    async def get(self, session: SessionKey) -> ConversationRecord | None:
        found = await self._select("session_key = %s", str(session))
        return found[0] if found else None

    async def delete(self, session: SessionKey) -> bool:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM conversations WHERE session_key = %s", (str(session),)
            )
            return cursor.rowcount > 0

    async def records(self, channel: str) -> tuple[ConversationRecord, ...]:
        # ':' + 1 is ';': the range holds exactly the keys that begin with 'channel:'.
        return await self._select(
            "session_key >= %s AND session_key < %s", f"{channel}:", f"{channel};"
        )

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM conversations WHERE session_key = ANY(%s) AND created_at < %s",
                (sorted(str(key) for key in sessions), made_before),
            )
            return cursor.rowcount

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        found = await self._select(
            "starts_with(session_key, %s) AND created_at < %s ORDER BY session_key",
            key_prefix,
            made_before,
        )
        return tuple(record.session for record in found)

    async def _select(self, where: str, *args: object) -> tuple[ConversationRecord, ...]:
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                f"SELECT session_key, created_at, metadata FROM conversations WHERE {where}",
                args,
            )
            rows = await cursor.fetchall()
        return tuple(
            ConversationRecord(
                SessionKey.parse(str(key)), float(created), tuple(json.loads(metadata).items())
            )
            for key, created, metadata in rows
        )
