"""Accepted files kept in PostgreSQL, so every replica can reach an upload's bytes."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import anyio

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.media.spared import awaited_files
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.ports import AwaitedFiles
from nanobot_api.domain.sessions import SessionKey


class PostgresMediaStore:
    """A MediaStore keeping each file's bytes and metadata in the ``media`` table, and a
    working copy on this replica's disk (what the agent's tools and channels open).

    The copy is written first, then the row; a row that cannot be written removes the
    copy, so a file is never kept on one replica only. With ``max_bytes``, the table
    is bounded as the folder is: a save that takes it over removes the oldest files
    (none saved in the last ``busy_s`` seconds: a turn may still use it elsewhere, and
    none that a message not yet delivered will send: ``awaited``, the outbox).
    :meth:`load` gives any replica the bytes of a file saved by another, by the name
    the copy was given.

    It is also SessionUploads and UploadCopies: the ``media`` table says which uploads
    a session has (whichever replica took them), and a replica without a working copy
    of one fetches it from the table on demand.
    """

    def __init__(
        self,
        db: PostgresDatabase,
        local: FilesystemMediaStore,
        *,
        max_bytes: int | None = None,
        busy_s: float = 0.0,
        awaited: AwaitedFiles | None = None,
    ) -> None:
        self._db = db
        self._local = local
        self._max_bytes = max_bytes
        self._busy_s = busy_s
        self._awaited = awaited

    async def save(
        self,
        data: bytes,
        kind: FileKind,
        original_name: str | None,
        session: SessionKey | None = None,
    ) -> str:
        path = await self._local.save(data, kind, original_name, session)
        try:
            async with self._db.connection() as conn:
                await conn.execute(
                    "INSERT INTO media (name, session_key, original_name, mime, size, data, "
                    "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        Path(path).name,
                        None if session is None else str(session),
                        original_name,
                        kind.mime,
                        len(data),
                        data,
                        time.time(),
                    ),
                )
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove, Path(path))
            raise
        if self._max_bytes is not None:
            await self._keep_within(self._max_bytes)
        return path

    async def _keep_within(self, limit: int) -> None:
        """Removes the oldest files until the table holds at most ``limit`` bytes
        (``api.maxMediaMb``, for every replica; each also bounds its own working copies).

        Never one that a turn running here uses, nor one saved in the last ``busy_s``
        seconds: which files another replica's running turns use is known only there,
        and a turn's files are never older than its time budget. The files of sessions
        with a turn running here go after every other's (the turn may send one). Never
        one that the outbox still has to send, whichever replica queued it."""
        async with self._db.connection() as conn:
            cursor = await conn.execute("SELECT COALESCE(SUM(size), 0) FROM media")
            row = await cursor.fetchone()
            total = 0 if row is None else int(row[0])
            if total <= limit:
                return
            cursor = await conn.execute(
                "SELECT name, size, session_key FROM media WHERE created_at < %s "
                "ORDER BY created_at, name",
                (time.time() - self._busy_s,),
            )
            rows = await cursor.fetchall()
        # Asked with this connection given back: the outbox may take one from the same
        # pool, and a task holding one while waiting for another starves the pool.
        awaited = await awaited_files(self._awaited)
        if awaited is None:
            return
        in_use = self._local.in_use() | awaited
        busy = self._local.busy_sessions()
        doomed: list[str] = []
        # Stable: oldest first within the idle sessions' files, then the busy ones'.
        for name, size, _session in sorted(rows, key=lambda row: row[2] in busy):
            if total <= limit:
                break
            if name not in in_use:
                doomed.append(name)
                total -= int(size)
        if doomed:
            async with self._db.connection() as conn:
                await conn.execute("DELETE FROM media WHERE name = ANY(%s)", (doomed,))

    def session_running(self, session: SessionKey) -> AbstractContextManager[None]:
        """While the block runs, ``session``'s uploads go after every idle session's
        (on this replica's disk and, for the rows old enough to go, in the table)."""
        return self._local.session_running(session)

    async def release(self, paths: Iterable[str]) -> None:
        """The files of a turn that completed: kept, here and in the database."""
        await self._local.release(paths)

    async def discard(self, paths: Iterable[str]) -> None:
        """The files of a turn that failed: removed from the database and this disk."""
        names = [Path(path).name for path in paths]
        if names:
            async with self._db.connection() as conn:
                await conn.execute("DELETE FROM media WHERE name = ANY(%s)", (names,))
        await self._local.discard(paths)

    async def forget_uploads(self, sessions: Collection[SessionKey], saved_before: float) -> int:
        """Removes the rows of ``sessions``' copies saved before ``saved_before`` (but the
        ones running turns here use), then this replica's working copies of them."""
        keys = [str(session) for session in sessions]
        if not keys:
            return 0
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "DELETE FROM media WHERE session_key = ANY(%s) AND created_at < %s "
                "AND name <> ALL(%s)",
                (keys, saved_before, sorted(self._local.in_use())),
            )
            gone = cursor.rowcount
        # A working copy whose row another replica removed counts as well.
        return max(gone, await self._local.forget_uploads(sessions, saved_before))

    async def sessions_with_uploads(
        self, key_prefix: str, saved_before: float
    ) -> tuple[SessionKey, ...]:
        """The sessions under ``key_prefix`` with a row saved before ``saved_before``, or a
        working copy on this replica (whose row another replica may have removed)."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT DISTINCT session_key FROM media WHERE starts_with(session_key, %s) "
                "AND created_at < %s AND name <> ALL(%s)",
                (key_prefix, saved_before, sorted(self._local.in_use())),
            )
            names = {str(row[0]) for row in await cursor.fetchall()}
        here = await self._local.sessions_with_uploads(key_prefix, saved_before)
        names.update(str(key) for key in here)
        return tuple(SessionKey.parse(name) for name in sorted(names))

    async def adopt(self, name: str, data: bytes, meta: dict[str, object]) -> bool:
        """Stores a file another store saved (``nanobot storage import``) under its name,
        with its sidecar's metadata; False if a file of that name is there already."""
        original, session, mime = meta.get("original_name"), meta.get("session"), meta.get("mime")
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "INSERT INTO media (name, session_key, original_name, mime, size, data, "
                "created_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    name,
                    session if isinstance(session, str) else None,
                    original if isinstance(original, str) else None,
                    mime if isinstance(mime, str) else "application/octet-stream",
                    len(data),
                    data,
                    time.time(),
                ),
            )
            return cursor.rowcount > 0

    async def find(self, session: SessionKey, name: str) -> str | None:
        """The working copy of ``session``'s upload that ``name`` designates (its stored
        name, or the latest upload the client named so), fetched if this replica has
        none; None for anything else."""
        stored = Path(name).name
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT name FROM media WHERE session_key = %s AND (name = %s "
                "OR original_name = %s) ORDER BY name = %s DESC, created_at DESC LIMIT 1",
                (str(session), stored, name, stored),
            )
            row = await cursor.fetchone()
        return None if row is None else await self.local_copy(str(row[0]))

    async def local_copy(self, path: str) -> str | None:
        name = Path(path).name
        found = await self._local.local_copy(name)
        if found is not None:
            return found
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT original_name, mime, session_key, data FROM media WHERE name = %s",
                (name,),
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        original, mime, session, data = row
        meta = {"original_name": original, "mime": mime, "size": len(data), "session": session}
        return await self._local.keep(name, bytes(data), meta)

    async def load(self, name: str) -> tuple[str | None, str, bytes] | None:
        """``(original_name, mime, bytes)`` of the file saved as ``name``, or None."""
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                "SELECT original_name, mime, data FROM media WHERE name = %s", (name,)
            )
            row = await cursor.fetchone()
        if row is None:
            return None
        return (None if row[0] is None else str(row[0])), str(row[1]), bytes(row[2])


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.with_name(f"{path.name}.json").unlink(missing_ok=True)
