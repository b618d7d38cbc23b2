"""Copying a SQLite workspace's ``responses.sqlite3`` into PostgreSQL, for ``nanobot
storage import``: responses (with their stream steps), conversation records and the
paused client tool calls, row for row (the tables have the same columns on both sides).

Safe to run again: a response, step or conversation the database already holds is left
as it is (and a response counted as skipped); a paused call already noted is not noted
twice. Responses keep their order (``previous_response_id`` chains and "the latest
response of a session" read it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import anyio

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase


class _Rows(NamedTuple):
    responses: Sequence[tuple[object, ...]]
    steps: Sequence[tuple[object, ...]]
    conversations: Sequence[tuple[object, ...]]
    paused: Sequence[tuple[object, ...]]


async def import_responses(path: Path, db: PostgresDatabase) -> tuple[int, int]:
    """Copies the file's rows into ``db``; returns (responses imported, skipped). A
    workspace without the file has nothing to copy."""
    rows = await anyio.to_thread.run_sync(_read, path)
    if rows is None:
        return 0, 0
    imported = 0
    async with db.transaction() as conn:
        for row in rows.responses:
            cursor = await conn.execute(
                "INSERT INTO responses (id, session_key, created_at, status, "
                "cancel_requested, body, alive_until) VALUES (%s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                row,
            )
            imported += cursor.rowcount
        async with conn.cursor() as cursor:
            await cursor.executemany(
                "INSERT INTO response_steps (response_id, step_no, step) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                rows.steps,
            )
            await cursor.executemany(
                "INSERT INTO conversations (session_key, created_at, metadata) "
                "VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                rows.conversations,
            )
            await cursor.executemany(
                "INSERT INTO paused_calls (call_id, session_key) SELECT %s, %s WHERE NOT "
                "EXISTS (SELECT 1 FROM paused_calls WHERE call_id = %s AND session_key = %s)",
                [(call, key, call, key) for call, key in rows.paused],
            )
    return imported, len(rows.responses) - imported


def _read(path: Path) -> _Rows | None:
    if not path.is_file():
        return None
    # Read only: the source workspace is left exactly as it was.
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        tables = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master")}
        columns = {str(row[1]) for row in conn.execute("PRAGMA table_info(responses)")}
        # A file of schema 1 has no alive_until (NULL: nothing vouches for a run).
        alive = "alive_until" if "alive_until" in columns else "NULL"
        responses = [
            (rid, key, created, status, bool(cancel), body, until)
            for rid, key, created, status, cancel, body, until in conn.execute(
                "SELECT id, session_key, created_at, status, cancel_requested, body, "
                f"{alive} FROM responses ORDER BY seq"
            )
        ]
        steps = list(conn.execute("SELECT response_id, step_no, step FROM response_steps"))
        conversations = list(
            conn.execute("SELECT session_key, created_at, metadata FROM conversations")
        )
        paused = []
        if "paused_calls" in tables:
            paused = list(
                conn.execute("SELECT call_id, session_key FROM paused_calls ORDER BY seq")
            )
        return _Rows(responses, steps, conversations, paused)
    finally:
        conn.close()
