"""Session history in one embedded SQLite file (``<workspace>/sessions.sqlite3``): the
SessionStore (and, through SqliteSessionLeases, the session leases) over the ``turns``
table, whose statements live in ``sqlite_turns``; here, how they are run (which on the
event loop, which in the worker thread) and the recent-history cache in front.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

import anyio
import anyio.lowlevel

from nanobot_api.adapters.storage import sqlite_turns as turns_sql
from nanobot_api.adapters.storage.recent import RecentHistory
from nanobot_api.adapters.storage.sqlite_files import (
    LazyConnection,
    SqliteFile,
    Synchronous,
    Unavailable,
)
from nanobot_api.adapters.storage.sqlite_leases import SqliteSessionLeases
from nanobot_api.adapters.storage.turn_json import encode_turn, ids_json
from nanobot_api.domain.branches import MessageIds, StoredTurn
from nanobot_api.domain.conversation import History, TurnRecord
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.sessions import Lease, SessionKey

_T = TypeVar("_T")
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
    ``_run_short``). Checkpoints (which do sync) run in the thread, every
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
            path,
            LazyConnection(partial(turns_sql.connect, path, synchronous), "SqliteSessionStore"),
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
        if max_messages is None:
            # A whole history may be large: read in the thread.
            return await self._run(turns_sql.history, name, max_messages)
        # A bounded read is a turn's own: on the loop when free (see _run_short; decoding
        # its JSON holds the GIL in a thread as much as here).
        read: tuple[int, History] = await self._run_short(
            turns_sql.versioned, turns_sql.history, name, max_messages
        )
        version, history = read
        self._seen(version)
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
            await self._run_short(turns_sql.commit, *args)
            await self._maybe_checkpoint()
        except BaseException:
            self._recent.drop(name)  # it may or may not have landed
            raise
        self._recent.appended(name, record, token)

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        """How many turns the active branch holds, and its latest (None if none)."""
        return await self._run(turns_sql.last_turn, str(key))

    async def turns(self, key: SessionKey) -> tuple[StoredTurn, ...]:
        """Every turn of the session, superseded ones included, oldest first."""
        return await self._run(turns_sql.turns, str(key))

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
            await self._run(turns_sql.commit_branch, name, json.dumps(list(kept)), rows, fence)
        finally:
            self._recent.drop(name)

    async def clear(self, key: SessionKey) -> int:
        """Deletes every turn of the session; returns how many there were."""
        name = str(key)
        self._recent.writing(name)
        try:
            return await self._run(turns_sql.clear, name)
        finally:
            self._recent.drop(name)

    async def forget_idle(self, key_prefix: str, idle_since: float) -> tuple[SessionKey, ...]:
        """Deletes the sessions under ``key_prefix`` idle since before ``idle_since``."""
        try:
            return await self._run(turns_sql.forget_idle, key_prefix, idle_since)
        finally:
            self._recent.reset()

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session holding a turn, with its count of turns."""
        rows = await self._run(turns_sql.sessions)
        return {SessionKey.parse(key): count for key, count in rows}

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` holding a turn, most recently changed first."""
        rows = await self._run(turns_sql.summaries, channel)
        return tuple(
            SessionSummary(SessionKey.parse(key), int(count), float(first), float(last))
            for key, count, first, last in rows
        )

    async def _run(self, func: Callable[..., _T], *args: object) -> _T:
        # Every use also reads data_version: a change means another process wrote.
        answer: tuple[int, _T] = await self._db.run(turns_sql.with_version, func, *args)
        self._seen(answer[0])
        return answer[1]

    async def _run_short(self, func: Callable[..., _T], *args: object) -> _T:
        """``func(connection, *args)`` right here if that cannot block, else in the thread.

        A short write with NORMAL (no disk sync: a commit, a lease) or a bounded read is
        a few tens of microseconds, less than the hand-off to a thread and back, which
        on a busy server cut throughput by a third; a thousand turns starting together
        (bench/inflight.py) queued behind each other's hand-offs, and behind the GIL
        the worker threads then took turns with the loop.

        While a worker thread has the connection (an unbounded read, a checkpoint), this
        waits for it a little on the loop rather than queueing behind it in a thread:
        once one write went to a thread, the writes arriving meanwhile found the
        connection busy and followed it, and a busy server ran at half its speed.
        Another process holding the file's write lock sends it to the thread, the one
        place allowed to wait for the file.
        """
        if self._synchronous == "NORMAL":
            for _ in range(_LOOP_TRIES):
                done = self._db.try_now(turns_sql.without_waiting, func, *args)
                if done is Unavailable.BUSY:
                    await anyio.sleep(_LOOP_WAIT_S)
                    continue
                if not isinstance(done, Unavailable):
                    return cast("_T", done)
                break  # not open yet, or locked by another process
        return await self._run(func, *args)

    async def _maybe_checkpoint(self) -> None:
        self._commits_since_checkpoint += 1
        if self._commits_since_checkpoint >= _CHECKPOINT_EVERY:
            self._commits_since_checkpoint = 0
            with anyio.CancelScope(shield=True):
                await self._run(turns_sql.checkpoint)

    def _unchanged_elsewhere(self) -> bool:
        """True if no other connection wrote since this one last looked.

        Runs on the event loop, not in a thread: reading ``data_version`` takes a few
        microseconds from SQLite's shared memory, far less than a thread hand-off. If a
        worker thread holds the connection, the cache is trusted: that thread reads
        ``data_version`` too (see ``_run``) and empties the cache if another process
        wrote. (Answering False there sent every turn of a busy server to the file: 4x
        slower.)
        """
        version = self._db.try_now(turns_sql.data_version)
        if version is Unavailable.NOT_OPEN:
            return False
        if isinstance(version, Unavailable):
            return True  # busy in the thread
        return self._seen(version)

    def _seen(self, version: int) -> bool:
        # data_version changes only when another connection commits (never for this
        # one's own writes), so a change means the cached history may be stale.
        if version == self._data_version:
            return True
        self._data_version = version
        self._recent.reset()
        return False
