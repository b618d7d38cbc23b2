"""Session history in one embedded SQLite file (``<workspace>/sessions.sqlite3``).

One row per turn holds the turn's messages as JSON, so a turn is written by a single
INSERT in its own transaction: a reader, a crash or a ``kill -9`` sees all of a turn or
none of it. Rows are keyed by ``(session_key, turn_no)``; every query walks that key, so
the cost of a turn stays flat however many turns and sessions the file holds.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

import anyio.to_thread

from nanobot_api.domain.conversation import History, Message, Role, ToolCall, TurnRecord
from nanobot_api.domain.sessions import SessionKey

_T = TypeVar("_T")
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    session_key TEXT NOT NULL,
    turn_no     INTEGER NOT NULL,
    n_messages  INTEGER NOT NULL,
    messages    TEXT NOT NULL,
    created_at  REAL NOT NULL,
    PRIMARY KEY (session_key, turn_no)
) WITHOUT ROWID;
"""
_ROLES: dict[object, Role] = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
}

Synchronous = Literal["FULL", "NORMAL"]


class SqliteSessionStore:
    """A SessionStore in a SQLite file, in WAL mode.

    Build it with ``store = await SqliteSessionStore.open(path)`` (the file and its
    schema are created if missing) and release it with ``await store.close()``; or use
    ``async with await SqliteSessionStore.open(path) as store``. Blocking calls run in a
    worker thread; one connection serves them in turn behind a lock.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        """Use ``open``; this takes a connection already set up by it."""
        self._conn = connection
        self._path = path
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, synchronous: Synchronous = "FULL") -> SqliteSessionStore:
        """Opens (creating if needed) the store at ``path``.

        ``synchronous="FULL"`` (the default) makes each commit survive a power loss as
        well as a crash of the process. ``"NORMAL"`` still survives ``kill -9`` (in WAL
        mode a committed transaction is in the OS's page cache, which outlives the
        process) but may lose the last turns if the machine itself goes down.
        """
        conn = await anyio.to_thread.run_sync(_connect, path, synchronous)
        return cls(conn, path)

    @property
    def path(self) -> Path:
        return self._path

    async def close(self) -> None:
        """Closes the connection; the store must not be used afterwards. Idempotent."""
        if not self._closed:
            self._closed = True
            await anyio.to_thread.run_sync(self._locked, self._conn.close)

    async def __aenter__(self) -> SqliteSessionStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """Committed turns, oldest first; with ``max_messages``, the most recent whole
        turns holding at most that many messages (read newest first, so only those)."""
        return await self._run(self._history, str(key), max_messages)

    async def commit(self, key: SessionKey, record: TurnRecord) -> None:
        """Appends the turn in one transaction; durable once this returns."""
        payload = json.dumps([_message_json(m) for m in record.messages], ensure_ascii=False)
        await self._run(self._commit, str(key), len(record.messages), payload)

    async def clear(self, key: SessionKey) -> int:
        """Deletes every turn of the session; returns how many there were."""
        return await self._run(self._clear, str(key))

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session holding a turn, with its count of turns."""
        rows = await self._run(self._sessions)
        return {SessionKey.parse(key): count for key, count in rows}

    # --- in the worker thread ---------------------------------------------------------

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        if self._closed:
            raise RuntimeError("SqliteSessionStore is closed")
        return await anyio.to_thread.run_sync(self._locked, func, *args)

    def _locked(self, func: Callable[..., _T], *args: object) -> _T:
        # sqlite3 connections may cross threads (check_same_thread=False) but must not
        # be used by two at once.
        with self._lock:
            return func(*args)

    def _history(self, key: str, max_messages: int | None) -> History:
        if max_messages is None:
            cursor = self._conn.execute(
                "SELECT messages FROM turns WHERE session_key = ? ORDER BY turn_no", (key,)
            )
            return tuple(_record(row[0]) for row in cursor)
        kept: list[TurnRecord] = []
        count = 0
        cursor = self._conn.execute(
            "SELECT n_messages, messages FROM turns WHERE session_key = ? ORDER BY turn_no DESC",
            (key,),
        )
        for n_messages, payload in cursor:
            count += n_messages
            if count > max_messages:
                break
            kept.append(_record(payload))
        cursor.close()
        return tuple(reversed(kept))

    def _commit(self, key: str, n_messages: int, payload: str) -> None:
        # One statement in autocommit mode is one transaction: the whole turn or
        # nothing. The next turn number comes from the primary key's index inside that
        # statement, so two writers could never take the same number.
        self._conn.execute(
            "INSERT INTO turns (session_key, turn_no, n_messages, messages, created_at) "
            "SELECT ?1, COALESCE(MAX(turn_no), 0) + 1, ?2, ?3, ?4 FROM turns "
            "WHERE session_key = ?1",
            (key, n_messages, payload, time.time()),
        )

    def _clear(self, key: str) -> int:
        return self._conn.execute("DELETE FROM turns WHERE session_key = ?", (key,)).rowcount

    def _sessions(self) -> list[tuple[str, int]]:
        cursor = self._conn.execute(
            "SELECT session_key, COUNT(*) FROM turns GROUP BY session_key ORDER BY session_key"
        )
        return [(str(key), int(count)) for key, count in cursor]


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None (autocommit): every statement is its own transaction, and a
    # read never leaves one open that would pin the WAL and keep it from checkpointing.
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        _prepare(conn, path, synchronous)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: Synchronous) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA busy_timeout=5000")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > _SCHEMA_VERSION:
        raise RuntimeError(f"{path} was written by a newer nanobot-api (schema {version})")
    conn.executescript(_SCHEMA)
    conn.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")


def _message_json(message: Message) -> dict[str, object]:
    item: dict[str, object] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        item["tool_calls"] = [[c.id, c.name, c.arguments] for c in message.tool_calls]
    if message.tool_call_id is not None:
        item["tool_call_id"] = message.tool_call_id
    return item


def _record(payload: str) -> TurnRecord:
    return TurnRecord(tuple(_message(item) for item in json.loads(payload)))


def _message(item: dict[str, object]) -> Message:
    role = _ROLES.get(item.get("role"))
    if role is None:
        raise ValueError(f"stored message has an unknown role {item.get('role')!r}")
    content = item.get("content")
    call_id = item.get("tool_call_id")
    calls = item.get("tool_calls")
    return Message(
        role,
        content if isinstance(content, str) else None,
        tuple(ToolCall(str(c[0]), str(c[1]), str(c[2])) for c in calls)
        if isinstance(calls, list)
        else (),
        call_id if isinstance(call_id, str) else None,
    )
