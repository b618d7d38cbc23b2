"""Responses, their steps and conversation records in ``<workspace>/responses.sqlite3``.

A sibling of ``sessions.sqlite3`` (as the outbox is): a background response writes a
row per batch of steps while it streams, and in its own file those writes never queue
a chat turn's history commit behind them. Every write is one transaction, durable on
return; reads and writes run in a worker thread on one connection per store.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path

from nanobot_api.adapters.storage.response_codec import (
    record_from_row,
    record_json,
    step_from_json,
    step_json,
)
from nanobot_api.adapters.storage.sqlite_files import (
    LazyConnection,
    SqliteFile,
    Synchronous,
    connect_wal,
)
from nanobot_api.domain.conversations import ConversationRecord
from nanobot_api.domain.responses import ResponseRecord, ResponseStep
from nanobot_api.domain.sessions import SessionKey

_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    session_key      TEXT NOT NULL,
    created_at       REAL NOT NULL,
    status           TEXT NOT NULL,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    body             TEXT NOT NULL,
    alive_until      REAL
);
CREATE INDEX IF NOT EXISTS responses_by_session ON responses (session_key, seq);
CREATE TABLE IF NOT EXISTS response_steps (
    response_id TEXT NOT NULL,
    step_no     INTEGER NOT NULL,
    step        TEXT NOT NULL,
    PRIMARY KEY (response_id, step_no)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS paused_calls (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id     TEXT NOT NULL,
    session_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS paused_calls_by_call ON paused_calls (call_id);
CREATE INDEX IF NOT EXISTS paused_calls_by_session ON paused_calls (session_key);
CREATE TABLE IF NOT EXISTS conversations (
    session_key TEXT PRIMARY KEY,
    created_at  REAL NOT NULL,
    metadata    TEXT NOT NULL
) WITHOUT ROWID;
"""
_RECORD_COLUMNS = "id, session_key, created_at, status, cancel_requested, body, alive_until"
_RUNNING = "status IN ('queued', 'in_progress')"
# domain.responses.forgettable, for rows made before :before.
_FORGETTABLE = (
    f"created_at < :before AND (NOT ({_RUNNING}) OR alive_until IS NULL OR alive_until < :before)"
)


def _upgrade(conn: sqlite3.Connection, version: int) -> None:
    if version == 1:  # schema 2: a background response's run vouches for it
        conn.execute("ALTER TABLE responses ADD COLUMN alive_until REAL")


def responses_path(workspace: Path) -> Path:
    """Where the embedded response store keeps its file."""
    return workspace / "responses.sqlite3"


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    return connect_wal(
        path,
        synchronous=synchronous,
        schema=_SCHEMA,
        schema_version=_SCHEMA_VERSION,
        upgrade=_upgrade,
    )


class _ResponsesFile(SqliteFile):
    def __init__(self, path: Path, synchronous: Synchronous, owner: str) -> None:
        super().__init__(path, LazyConnection(partial(_connect, path, synchronous), owner))


class SqliteResponseStore(_ResponsesFile):
    """A ResponseStore, ResponseLog, RunLiveness and PausedCalls in a SQLite file, in
    WAL mode.

    ``synchronous="NORMAL"`` keeps every write through a crash of the process (see
    SqliteSessionStore); a background response's steps are written at that cost.
    """

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        super().__init__(path, synchronous, "SqliteResponseStore")

    async def put(self, record: ResponseRecord) -> None:
        await self._run(_put, record)

    async def get(self, response_id: str) -> ResponseRecord | None:
        return await self._run(_get, response_id)

    async def delete(self, response_id: str) -> bool:
        return await self._run(_delete, response_id)

    async def request_cancel(self, response_id: str) -> ResponseRecord | None:
        return await self._run(_request_cancel, response_id)

    async def latest(self, session: SessionKey) -> ResponseRecord | None:
        return await self._run(_latest, str(session))

    async def append(self, response_id: str, first: int, steps: Sequence[ResponseStep]) -> None:
        rows = [(response_id, first + i, step_json(s)) for i, s in enumerate(steps)]
        await self._run(_append, rows)

    async def read(self, response_id: str, after: int = -1) -> tuple[ResponseStep, ...]:
        return await self._run(_read, response_id, after)

    async def keep_alive(self, response_id: str, until: float) -> None:
        await self._run(_keep_alive, response_id, until)

    async def interrupt(self, record: ResponseRecord, now: float) -> bool:
        return await self._run(_interrupt, record, now)

    async def note(self, session: SessionKey, call_ids: Sequence[str]) -> None:
        await self._run(_note, str(session), list(call_ids))

    async def find(self, call_ids: Sequence[str], channel: str) -> SessionKey | None:
        if not call_ids:
            return None
        found = await self._run(_find, list(call_ids), channel)
        return None if found is None else SessionKey.parse(found)

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        keys = sorted(str(key) for key in sessions)
        return await self._run_if_present(_forget_responses, keys, made_before) or 0

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        found = await self._run_if_present(_with_responses, key_prefix, made_before)
        return tuple(SessionKey.parse(key) for key in found or ())


def _put(conn: sqlite3.Connection, record: ResponseRecord) -> None:
    # The cancel flag belongs to whoever asked for it: a put never clears it. Nor does
    # it move alive_until, which only the running process's keep_alive renews.
    conn.execute(
        f"INSERT INTO responses ({_RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, body = excluded.body, "
        "cancel_requested = MAX(cancel_requested, excluded.cancel_requested)",
        (
            record.id,
            str(record.session),
            record.created_at,
            record.status,
            int(record.cancel_requested),
            record_json(record),
            record.alive_until,
        ),
    )


def _keep_alive(conn: sqlite3.Connection, response_id: str, until: float) -> None:
    conn.execute(
        f"UPDATE responses SET alive_until = ? WHERE id = ? AND {_RUNNING}", (until, response_id)
    )


def _interrupt(conn: sqlite3.Connection, record: ResponseRecord, now: float) -> bool:
    cursor = conn.execute(
        f"UPDATE responses SET status = ?, body = ? WHERE id = ? AND {_RUNNING} "
        "AND alive_until < ?",
        (record.status, record_json(record), record.id, now),
    )
    return cursor.rowcount > 0


def _get(conn: sqlite3.Connection, response_id: str) -> ResponseRecord | None:
    row = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM responses WHERE id = ?", (response_id,)
    ).fetchone()
    return None if row is None else record_from_row(row)


def _delete(conn: sqlite3.Connection, response_id: str) -> bool:
    with conn:  # one transaction: the record and its steps go together
        conn.execute("BEGIN")
        conn.execute("DELETE FROM response_steps WHERE response_id = ?", (response_id,))
        return conn.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount > 0


def _request_cancel(conn: sqlite3.Connection, response_id: str) -> ResponseRecord | None:
    conn.execute(
        f"UPDATE responses SET cancel_requested = 1 WHERE id = ? AND {_RUNNING}",
        (response_id,),
    )
    return _get(conn, response_id)


def _latest(conn: sqlite3.Connection, session_key: str) -> ResponseRecord | None:
    row = conn.execute(
        f"SELECT {_RECORD_COLUMNS} FROM responses WHERE session_key = ? ORDER BY seq DESC LIMIT 1",
        (session_key,),
    ).fetchone()
    return None if row is None else record_from_row(row)


def _append(conn: sqlite3.Connection, rows: list[tuple[str, int, str]]) -> None:
    with conn:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT OR IGNORE INTO response_steps (response_id, step_no, step) VALUES (?, ?, ?)",
            rows,
        )


def _read(conn: sqlite3.Connection, response_id: str, after: int) -> tuple[ResponseStep, ...]:
    cursor = conn.execute(
        "SELECT step FROM response_steps WHERE response_id = ? AND step_no > ? ORDER BY step_no",
        (response_id, after),
    )
    return tuple(step_from_json(row[0]) for row in cursor)


def _note(conn: sqlite3.Connection, session_key: str, call_ids: list[str]) -> None:
    with conn:  # one transaction: what the session waited for before goes with it
        conn.execute("BEGIN")
        conn.execute("DELETE FROM paused_calls WHERE session_key = ?", (session_key,))
        conn.executemany(
            "INSERT INTO paused_calls (call_id, session_key) VALUES (?, ?)",
            [(call_id, session_key) for call_id in call_ids],
        )


def _find(conn: sqlite3.Connection, call_ids: list[str], channel: str) -> str | None:
    marks = ", ".join("?" * len(call_ids))
    # ':' + 1 is ';': the range holds exactly the keys that begin with 'channel:'.
    row = conn.execute(
        f"SELECT session_key FROM paused_calls WHERE call_id IN ({marks}) "
        "AND session_key >= ? AND session_key < ? ORDER BY seq DESC LIMIT 1",
        (*call_ids, f"{channel}:", f"{channel};"),
    ).fetchone()
    return None if row is None else str(row[0])


def _forget_responses(conn: sqlite3.Connection, keys: list[str], made_before: float) -> int:
    gone = 0
    mine = f"session_key = :key AND {_FORGETTABLE}"
    with conn:  # one transaction: a response and its steps go together
        conn.execute("BEGIN")
        for key in keys:  # each through the session's index
            args = {"key": key, "before": made_before}
            conn.execute(
                f"DELETE FROM response_steps WHERE response_id IN (SELECT id FROM responses "
                f"WHERE {mine})",
                args,
            )
            gone += conn.execute(f"DELETE FROM responses WHERE {mine}", args).rowcount
            conn.execute("DELETE FROM paused_calls WHERE session_key = :key", args)
    return gone


def _with_responses(conn: sqlite3.Connection, prefix: str, made_before: float) -> list[str]:
    # A range over the session index finds the prefix's keys without a scan.
    prefixed = "session_key >= :low AND session_key < :high"
    cursor = conn.execute(
        f"SELECT session_key FROM responses WHERE {prefixed} AND {_FORGETTABLE} "
        f"UNION SELECT session_key FROM paused_calls WHERE {prefixed} ORDER BY 1",
        {"low": prefix, "high": prefix + "\U0010ffff", "before": made_before},
    )
    return [str(row[0]) for row in cursor]


class SqliteConversationStore(_ResponsesFile):
    """A ConversationStore in the same SQLite file as the responses."""

    def __init__(self, path: Path, *, synchronous: Synchronous = "NORMAL") -> None:
        super().__init__(path, synchronous, "SqliteConversationStore")

    async def put(self, record: ConversationRecord) -> None:
        metadata = json.dumps(dict(record.metadata), ensure_ascii=False)
        await self._run(_put_conversation, str(record.session), record.created_at, metadata)

    async def get(self, session: SessionKey) -> ConversationRecord | None:
        rows = await self._run(_conversations, "session_key = ?", str(session))
        return rows[0] if rows else None

    async def delete(self, session: SessionKey) -> bool:
        return await self._run(_delete_conversation, str(session))

    async def records(self, channel: str) -> tuple[ConversationRecord, ...]:
        # ':' + 1 is ';': the range holds exactly the keys that begin with 'channel:'.
        return await self._run(
            _conversations, "session_key >= ? AND session_key < ?", f"{channel}:", f"{channel};"
        )

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        keys = sorted(str(key) for key in sessions)
        return await self._run_if_present(_forget_conversations, keys, made_before) or 0

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        where = "session_key >= ? AND session_key < ? AND created_at < ? ORDER BY session_key"
        bounds = (key_prefix, key_prefix + "\U0010ffff", made_before)
        found = await self._run_if_present(_conversations, where, *bounds)
        return tuple(record.session for record in found or ())


def _put_conversation(
    conn: sqlite3.Connection, session_key: str, created_at: float, metadata: str
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO conversations (session_key, created_at, metadata) VALUES (?, ?, ?)",
        (session_key, created_at, metadata),
    )


def _delete_conversation(conn: sqlite3.Connection, session_key: str) -> bool:
    return (
        conn.execute("DELETE FROM conversations WHERE session_key = ?", (session_key,)).rowcount > 0
    )


def _forget_conversations(conn: sqlite3.Connection, keys: list[str], made_before: float) -> int:
    with conn:
        conn.execute("BEGIN")
        return sum(
            conn.execute(
                "DELETE FROM conversations WHERE session_key = ? AND created_at < ?",
                (key, made_before),
            ).rowcount
            for key in keys
        )


def _conversations(
    conn: sqlite3.Connection, where: str, *args: object
) -> tuple[ConversationRecord, ...]:
    cursor = conn.execute(
        f"SELECT session_key, created_at, metadata FROM conversations WHERE {where}", args
    )
    return tuple(
        ConversationRecord(
            SessionKey.parse(key), float(created), tuple(json.loads(metadata).items())
        )
        for key, created, metadata in cursor
    )
