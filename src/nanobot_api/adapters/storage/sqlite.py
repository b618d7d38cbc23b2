"""Session history in one embedded SQLite file (``<workspace>/sessions.sqlite3``).

One row per turn holds the turn's messages as JSON, so a turn is written by a single
INSERT in its own transaction: a reader, a crash or a ``kill -9`` sees all of a turn or
none of it. Rows are keyed by ``(session_key, turn_no)``; every query walks that key, so
the cost of a turn stays flat however many turns and sessions the file holds.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.lowlevel

from nanobot_api.adapters.storage.recent import RecentHistory
from nanobot_api.adapters.storage.sqlite_files import (
    BUSY_TIMEOUT_MS,
    LazyConnection,
    SqliteFile,
    Synchronous,
    Unavailable,
    connect_wal,
)
from nanobot_api.adapters.storage.sqlite_leases import SCHEMA as LEASES_SCHEMA
from nanobot_api.adapters.storage.sqlite_leases import SqliteSessionLeases
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

_CHECKPOINT_EVERY = 500
# How long a commit waits on the loop for the connection before taking the thread.
_LOOP_TRIES = 20
_LOOP_WAIT_S = 0.0005


class SqliteSessionStore(SqliteSessionLeases, SqliteFile):
    """A SessionStore in a SQLite file, in WAL mode.

    Opened and closed as every ``SqliteFile``. Blocking calls run in a worker thread;
    one connection serves them in turn behind a lock.

    ``synchronous="NORMAL"`` (the default) keeps every committed turn through a crash or
    ``kill -9`` of the process: in WAL mode a commit is written to the WAL file before it
    returns, and the OS's page cache, which holds it, outlives the process. What NORMAL
    gives up is the fsync per commit, so a power loss or kernel crash may lose the last
    turns (never corrupt the file). That fsync measured 0.3-0.5 ms per turn here, a
    third of the target overhead of a whole turn; ``"FULL"`` buys it back for
    deployments that must survive the machine going down.

    With NORMAL, a commit is a few tens of microseconds with no disk sync, so it runs
    on the event loop: the hand-off to a thread and back cost more than the write and,
    on a busy server, cut throughput by a third. The loop never waits on the file for
    it: such a commit runs with no busy timeout; while a worker thread has the
    connection it is retried on the loop for a few milliseconds, and it goes to the
    thread if another process holds the file or the connection stays busy (see
    ``_commit_on_loop``). Checkpoints (which do sync) run in the thread, every
    ``_CHECKPOINT_EVERY`` commits, instead of inside a commit.
    """

    def __init__(
        self,
        path: Path,
        *,
        synchronous: Synchronous = "NORMAL",
        cached_sessions: int = 256,
        lease_s: float = 30.0,
    ) -> None:
        self._lease_s = lease_s
        super().__init__(
            path, LazyConnection(partial(_connect, path, synchronous), "SqliteSessionStore")
        )
        self._synchronous: Synchronous = synchronous
        self._recent = RecentHistory(cached_sessions)
        self._data_version: int | None = None
        self._commits_since_checkpoint = 0

    async def close(self) -> None:
        self._recent.reset()
        await super().close()

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        """Committed turns, oldest first; with ``max_messages``, the most recent whole
        turns holding at most that many messages (read newest first, so only those).

        Bounded reads of recently used sessions come from memory (``RecentHistory``).
        A file deleted or replaced since it was opened raises StorageUnavailable."""
        self.check_in_place()
        name = str(key)
        if max_messages is not None:
            cached = self._recent.get(name, max_messages)
            if cached is not None and self._unchanged_elsewhere():
                return cached
        token = self._recent.token(name)
        history = await self._run(self._history, name, max_messages)
        if max_messages is not None:
            self._recent.put(name, max_messages, history, token)
        return history

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, lease: Lease | None = None
    ) -> None:
        """Appends the turn to the active branch in one transaction; durable on return.
        With ``lease``, only while it is the session's current one (else LeaseLost).
        A file deleted or replaced since it was opened raises StorageUnavailable: the
        turn would be lost."""
        self.check_in_place()
        name = str(key)
        payload = encode_turn(record)
        token = self._recent.writing(name)
        args = (name, len(record.messages), payload, None if lease is None else lease.token)
        try:
            # Cancelled before it starts: nothing lands. Once written, it reports success.
            await anyio.lowlevel.checkpoint_if_cancelled()
            if not await self._commit_on_loop(*args):
                await self._run(self._commit, *args)
            await self._maybe_checkpoint()
        except BaseException:
            self._recent.drop(name)  # it may or may not have landed
            raise
        self._recent.appended(name, record, token)

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        """How many turns the active branch holds, and its latest (None if none)."""
        return await self._run(self._last_turn, str(key))

    async def turns(self, key: SessionKey) -> tuple[StoredTurn, ...]:
        """Every turn of the session, superseded ones included, oldest first."""
        return await self._run(self._turns, str(key))

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
        in one transaction; durable on return. With ``lease``, only while it is the
        session's current one (else LeaseLost, nothing written)."""
        self.check_in_place()
        name = str(key)
        rows: list[tuple[int, str, str | None]] = [
            (len(r.messages), encode_turn(r), None) for r in imported
        ]
        rows.append((len(record.messages), encode_turn(record), ids_json(ids)))
        self._recent.writing(name)
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
            fence = None if lease is None else lease.token
            await self._run(self._commit_branch, name, json.dumps(list(kept)), rows, fence)
        finally:
            self._recent.drop(name)

    async def clear(self, key: SessionKey) -> int:
        """Deletes every turn of the session; returns how many there were."""
        name = str(key)
        self._recent.writing(name)
        try:
            return await self._run(self._clear, name)
        finally:
            self._recent.drop(name)

    async def forget_idle(self, key_prefix: str, idle_since: float) -> tuple[SessionKey, ...]:
        """Deletes the sessions under ``key_prefix`` idle since before ``idle_since``."""
        try:
            return await self._run(self._forget_idle, key_prefix, idle_since)
        finally:
            self._recent.reset()

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session holding a turn, with its count of turns."""
        rows = await self._run(self._sessions)
        return {SessionKey.parse(key): count for key, count in rows}

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` holding a turn, most recently changed first."""
        rows = await self._run(self._summaries, channel)
        return tuple(
            SessionSummary(SessionKey.parse(key), int(count), float(first), float(last))
            for key, count, first, last in rows
        )

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        # Every use also reads data_version: a change means another process wrote.
        answer: tuple[int, _T] = await self._db.run(_with_version, func, *args)
        self._seen(answer[0])
        return answer[1]

    async def _commit_on_loop(
        self, name: str, n_messages: int, payload: str, fence: int | None
    ) -> bool:
        """Commits right here if that cannot block; False leaves it to the thread.

        While a worker thread has the connection (a history read, a checkpoint), this
        waits for it a little on the loop rather than queueing behind it in a thread:
        once one commit went to a thread, the commits arriving meanwhile found the
        connection busy and followed it, and a busy server ran at half its speed.
        """
        if self._synchronous != "NORMAL":
            return False
        for _ in range(_LOOP_TRIES):
            done = self._db.try_now(_commit_without_waiting, name, n_messages, payload, fence)
            if done is not Unavailable.BUSY:
                return done is True
            await anyio.sleep(_LOOP_WAIT_S)
        return False

    async def _maybe_checkpoint(self) -> None:
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= _CHECKPOINT_EVERY:
            self._commits_since_checkpoint = 0
            with anyio.CancelScope(shield=True):
                await self._run(_checkpoint)

    def _unchanged_elsewhere(self) -> bool:
        """True if no other connection wrote since this one last looked.

        Runs on the event loop, not in a thread: reading ``data_version`` takes a few
        microseconds from SQLite's shared memory, far less than a thread hand-off. If a
        worker thread holds the connection, the cache is trusted: that thread reads
        ``data_version`` too (see ``_run``) and empties the cache if another process
        wrote. (Answering False there sent every turn of a busy server to the file: 4x
        slower.)
        """
        version = self._db.try_now(_data_version)
        if version is Unavailable.NOT_OPEN:
            return False
        if version is Unavailable.BUSY:
            return True
        return self._seen(version)

    def _seen(self, version: int) -> bool:
        # data_version changes only when another connection commits (never for this
        # one's own writes), so a change means the cached history may be stale.
        if version == self._data_version:
            return True
        self._data_version = version
        self._recent.reset()
        return False

    @staticmethod
    def _history(conn: sqlite3.Connection, key: str, max_messages: int | None) -> History:
        """The active branch, or its most recent whole turns within ``max_messages``."""
        if max_messages is None:
            cursor = conn.execute(
                "SELECT messages FROM turns WHERE session_key = ? AND superseded = 0 "
                "ORDER BY turn_no",
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

    @staticmethod
    def _commit(
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

    @staticmethod
    def _last_turn(conn: sqlite3.Connection, key: str) -> tuple[int, TurnRecord | None]:
        row = conn.execute(
            "SELECT COUNT(*), (SELECT messages FROM turns WHERE session_key = ?1 AND "
            "superseded = 0 ORDER BY turn_no DESC LIMIT 1) FROM turns "
            "WHERE session_key = ?1 AND superseded = 0",
            (key,),
        ).fetchone()
        return int(row[0]), (None if row[1] is None else decode_turn(row[1]))

    @staticmethod
    def _turns(conn: sqlite3.Connection, key: str) -> tuple[StoredTurn, ...]:
        cursor = conn.execute(
            "SELECT turn_no, parent_no, superseded, ids, messages FROM turns "
            "WHERE session_key = ? ORDER BY turn_no",
            (key,),
        )
        return tuple(
            StoredTurn(int(no), parent, decode_turn(payload), bool(superseded), ids_from_json(ids))
            for no, parent, superseded, ids, payload in cursor
        )

    @staticmethod
    def _commit_branch(
        conn: sqlite3.Connection,
        key: str,
        kept: str,
        rows: list[tuple[int, str, str | None]],
        fence: int | None,
    ) -> None:
        now = time.time()
        conn.execute("BEGIN IMMEDIATE")
        try:
            _check_fence(conn, key, fence)
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

    @staticmethod
    def _clear(conn: sqlite3.Connection, key: str) -> int:
        return conn.execute("DELETE FROM turns WHERE session_key = ?", (key,)).rowcount

    @staticmethod
    def _forget_idle(
        conn: sqlite3.Connection, prefix: str, idle_since: float
    ) -> tuple[SessionKey, ...]:
        # A range over the primary key finds the prefix's sessions without a scan.
        end = prefix + "\U0010ffff"
        cursor = conn.execute(
            "DELETE FROM turns WHERE session_key IN (SELECT session_key FROM turns "
            "WHERE session_key >= ?1 AND session_key < ?2 GROUP BY session_key "
            "HAVING MAX(created_at) < ?3) RETURNING session_key",
            (prefix, end, idle_since),
        )
        return tuple(SessionKey.parse(name) for name in sorted({row[0] for row in cursor}))

    @staticmethod
    def _summaries(conn: sqlite3.Connection, channel: str) -> list[tuple[str, int, float, float]]:
        # ':' + 1 is ';': the range holds exactly the keys that begin with 'channel:'.
        cursor = conn.execute(
            "SELECT session_key, SUM(1 - superseded), MIN(created_at), MAX(created_at) "
            "FROM turns WHERE session_key >= ? AND session_key < ? GROUP BY session_key "
            "ORDER BY MAX(created_at) DESC, session_key",
            (f"{channel}:", f"{channel};"),
        )
        return list(cursor)

    @staticmethod
    def _sessions(conn: sqlite3.Connection) -> list[tuple[str, int]]:
        cursor = conn.execute(
            "SELECT session_key, COUNT(*) FROM turns WHERE superseded = 0 "
            "GROUP BY session_key ORDER BY session_key"
        )
        return [(str(key), int(count)) for key, count in cursor]


def _checkpoint(conn: sqlite3.Connection) -> None:
    # PASSIVE: copies what it can without waiting for readers or writers.
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


def _check_fence(conn: sqlite3.Connection, key: str, fence: int | None) -> None:
    """Raises LeaseLost unless ``fence`` (if any) is still the session's lease token."""
    if (
        fence is not None
        and not conn.execute(
            "SELECT 1 FROM session_leases WHERE session_key = ? AND token = ?", (key, fence)
        ).fetchone()
    ):
        raise lease_lost()


def _commit_without_waiting(
    conn: sqlite3.Connection, name: str, n_messages: int, payload: str, fence: int | None
) -> bool:
    """Commits unless another process holds the file's write lock (then False).

    The connection's busy timeout is 0 outside the worker thread, so this never waits.
    """
    try:
        SqliteSessionStore._commit(conn, name, n_messages, payload, fence)
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
            raise
        return False  # another process is writing: wait for it in the thread
    return True


def _with_version(
    conn: sqlite3.Connection, func: Callable[..., _T], *args: object
) -> tuple[int, _T]:
    # Only the worker thread may wait for another process's lock (see _connect).
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    try:
        return _data_version(conn), func(conn, *args)
    finally:
        conn.execute("PRAGMA busy_timeout=0")


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _connect(path: Path, synchronous: Synchronous) -> sqlite3.Connection:
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
