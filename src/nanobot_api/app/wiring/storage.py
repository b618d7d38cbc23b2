"""Where durable state lives: SQLite files in the workspace (the default), or one
PostgreSQL database that every worker process and replica shares (``storage.url``).

:func:`storage_for` builds the stores of one backend without opening anything (the
composition root is synchronous); :meth:`Storage.open` connects, retrying a database
that is not up yet for a bounded time, and migrates the schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, Self

import attrs

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.storage.postgres import PostgresSessionStore
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.adapters.storage.postgres_requests import PostgresRequestRecords
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.adapters.storage.sqlite_files import SqliteFile
from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.adapters.storage.sqlite_requests import SqliteRequestRecords
from nanobot_api.app.config import Config
from nanobot_api.domain.attachments import MIB
from nanobot_api.domain.ports import (
    ForgetsUploads,
    IdempotencyLeases,
    IdempotencyStore,
    LimitCounters,
    MediaStore,
    Outbox,
    OutboxAdmin,
    SessionStore,
    SessionUploads,
    UploadCopies,
)

# Sessions whose recent history is kept in memory, by the store and by the model
# adapter's request encoder alike: the one bound of history caches (bench/history_cache.py
# reports the memory it allows).
HISTORY_CACHE_SESSIONS = 256
SESSIONS_FILE = "sessions.sqlite3"
OUTBOX_FILE = "outbox.sqlite3"
REQUESTS_FILE = "requests.sqlite3"


class OutboxStore(Outbox, OutboxAdmin, Protocol):
    """Both sides of the outbox, as one store implements them."""


class UploadStore(MediaStore, SessionUploads, UploadCopies, ForgetsUploads, Protocol):
    """Where uploads are kept, found by session (the message tool), read back as local
    files (channels) and removed with their sessions, as one store implements it."""


class RequestRecords(IdempotencyStore, IdempotencyLeases, LimitCounters, Protocol):
    """Idempotency-Key records and the limits' counters, as one store implements them."""


@attrs.define
class Storage:
    """The stores of one backend. ``open``/``close`` bracket their use."""

    sessions: SessionStore
    outbox: OutboxStore
    media: UploadStore
    # Idempotency-Key records and limit counters: shared by every worker and replica
    # that shares the rest (a SQLite file opened on first use; most servers never
    # need it).
    requests: RequestRecords
    database: PostgresDatabase | None = None
    _files: tuple[SqliteSessionStore | SqliteOutbox, ...] = ()

    def with_sessions(self, sessions: SessionStore) -> Storage:
        """These stores with ``sessions`` in place of the backend's own (left unopened)."""
        files = tuple(f for f in self._files if f is not self.sessions)
        return attrs.evolve(self, sessions=sessions, files=files)

    @property
    def serves_sessions(self) -> bool:
        """Whether the sessions are the backend's own (not a store given by the caller)."""
        return self.database is not None or any(f is self.sessions for f in self._files)

    @property
    def made_on_first_use(self) -> tuple[SqliteFile, ...]:
        """The files ``open`` leaves alone, to be made when first needed; one that
        exists is checked at start-up with ``open_if_present``."""
        return (self.requests,) if isinstance(self.requests, SqliteRequestRecords) else ()

    async def ping(self) -> None:
        """Raises unless the backend answers a query now (for readiness)."""
        if self.database is not None:
            await self.database.ping()
        elif isinstance(self.sessions, SqliteSessionStore):
            await self.sessions.ping()

    @property
    def kind(self) -> str:
        """What an operator calls the backend: "sessions" (a file) or "database"."""
        return "database" if self.database is not None else "sessions"

    @property
    def path(self) -> Path | None:
        """The sessions file, for SQLite; None for a database."""
        return self.sessions.path if isinstance(self.sessions, SqliteSessionStore) else None

    async def open(self, *, retry_for_s: float = 0.0) -> None:
        """Connects (PostgreSQL: retrying for ``retry_for_s``, then migrating) or opens
        the files; raises StorageUnavailable when the database cannot be reached."""
        if self.database is not None:
            await self.database.open(retry_for_s=retry_for_s)
        # The outbox file is opened by whoever delivers from it (see Outgoing), so a
        # server with no outbound side never creates it.
        for store in self._files:
            if store is not self.outbox:
                await store.open()

    @contextlib.asynccontextmanager
    async def opened(self, *, retry_for_s: float = 0.0) -> AsyncIterator[Self]:
        """``open`` on entry, ``close`` on exit."""
        await self.open(retry_for_s=retry_for_s)
        try:
            yield self
        finally:
            await self.close()

    async def close(self) -> None:
        for store in self._files:
            await store.close()
        if isinstance(self.requests, SqliteRequestRecords):
            await self.requests.close()
        if self.database is not None:
            await self.database.close()


async def check_storage(config: Config) -> None:
    """Opens the configured storage once and closes it: waits (``storage.connectRetryS``)
    for a database that is not up yet and migrates its schema, so a server fails at
    start-up, in one line, rather than at its first turn."""
    async with storage_for(config).opened(retry_for_s=config.storage.connect_retry_s):
        pass


def storage_for(config: Config) -> Storage:
    """The stores ``config.storage.url`` names (none opened yet). An outbox claim lasts
    ``storage.leaseS``, renewed while its delivery runs (see OutboxWorker)."""
    storage = config.storage
    return storage_at(
        storage.url,
        config.workspace,
        lease_s=storage.lease_s,
        media_max_bytes=config.api.max_media_mb * MIB,
        # A turn's uploads are in use for at most its budget (and its wait to start).
        turn_s=config.api.timeout + 60,
    )


def storage_at(
    url: str,
    workspace: Path,
    *,
    lease_s: float = 30.0,
    media_max_bytes: int | None = None,
    turn_s: float = 180.0,
) -> Storage:
    """SQLite files in ``workspace`` for an empty ``url``, else that PostgreSQL database.
    Uploads keep a working copy in the workspace either way."""
    if not url:
        sessions = SqliteSessionStore(
            workspace / SESSIONS_FILE, cached_sessions=HISTORY_CACHE_SESSIONS, lease_s=lease_s
        )
        outbox = SqliteOutbox(workspace / OUTBOX_FILE, claim_s=lease_s)
        # The bound on uploads never removes a file the outbox has still to send.
        local_media = FilesystemMediaStore.in_workspace(
            workspace, max_bytes=media_max_bytes, awaited=outbox
        )
        requests = SqliteRequestRecords(workspace / REQUESTS_FILE)
        return Storage(sessions, outbox, local_media, requests, files=(sessions, outbox))
    from nanobot_api.adapters.media.postgres import PostgresMediaStore

    db = PostgresDatabase(url)
    shared_outbox = PostgresOutbox(db, claim_s=lease_s)
    local_media = FilesystemMediaStore.in_workspace(
        workspace, max_bytes=media_max_bytes, awaited=shared_outbox
    )
    media = PostgresMediaStore(
        db, local_media, max_bytes=media_max_bytes, busy_s=turn_s, awaited=shared_outbox
    )
    return Storage(
        PostgresSessionStore(db, lease_s=lease_s, cached_sessions=HISTORY_CACHE_SESSIONS),
        shared_outbox,
        media,
        PostgresRequestRecords(db),
        database=db,
    )
