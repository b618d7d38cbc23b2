"""Uploads kept in PostgreSQL: every replica reaches an upload's bytes and metadata."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.media.postgres import PostgresMediaStore
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent, delivered
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import empty_tables, scratch_database

A = SessionKey("api", "a")


@pytest.fixture(name="db")
async def _db(shared_postgres_url: str) -> AsyncIterator[PostgresDatabase]:
    async with scratch_database(shared_postgres_url) as db:
        yield db


async def test_an_upload_saved_on_one_replica_is_read_on_another(
    db: PostgresDatabase, tmp_path: Path
) -> None:
    here = PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path / "a"))
    there = PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path / "b"))
    path = Path(await here.save(b"%PDF-1.4 bytes", FileKind.PDF, "q3.pdf", A))
    # The working copy on this replica.
    assert await anyio.to_thread.run_sync(path.read_bytes) == b"%PDF-1.4 bytes"
    assert await there.load(path.name) == ("q3.pdf", FileKind.PDF.mime, b"%PDF-1.4 bytes")
    assert await there.load("0" * 32 + ".pdf") is None


async def test_a_failed_turns_uploads_leave_the_database_and_the_disk(
    db: PostgresDatabase, tmp_path: Path
) -> None:
    store = PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path))
    path = await store.save(b"GIF89a", FileKind.GIF, None, A)
    await store.discard([path])
    assert await store.load(Path(path).name) is None
    assert not await anyio.to_thread.run_sync(Path(path).exists)


async def test_import_adopts_a_file_once(db: PostgresDatabase, tmp_path: Path) -> None:
    store = PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path))
    meta: dict[str, object] = {"original_name": "x.png", "mime": "image/png", "session": "api:a"}
    assert await store.adopt("f" * 32 + ".png", b"\x89PNG", meta)
    assert not await store.adopt("f" * 32 + ".png", b"\x89PNG", meta)
    assert await store.load("f" * 32 + ".png") == ("x.png", "image/png", b"\x89PNG")


async def test_the_table_keeps_under_its_bound_dropping_the_oldest_but_files_in_use(
    db: PostgresDatabase, tmp_path: Path
) -> None:
    """api.maxMediaMb holds for the database too, whichever replica saves."""
    local = FilesystemMediaStore.in_workspace(tmp_path)
    store = PostgresMediaStore(db, local, max_bytes=250)
    running = Path(await store.save(b"r" * 100, FileKind.TEXT, "running.txt", A))  # in use
    saved = []
    for n in range(4):
        path = Path(await store.save(bytes([n]) * 100, FileKind.TEXT, f"{n}.txt", A))
        await store.release([str(path)])
        saved.append(path.name)
    assert await names(db) == [running.name, saved[3]]
    # Another replica cannot know which files this one's turns use: it leaves every
    # file younger than a turn's budget, even over the bound.
    there = PostgresMediaStore(
        db, FilesystemMediaStore.in_workspace(tmp_path / "b"), max_bytes=250, busy_s=60
    )
    newest = Path(await there.save(b"n" * 100, FileKind.TEXT, "n.txt", A))
    assert await names(db) == [running.name, saved[3], newest.name]


async def test_the_table_drops_idle_sessions_files_before_a_running_sessions(
    db: PostgresDatabase, tmp_path: Path
) -> None:
    """Over the bound, a session with a turn running here keeps its older upload while
    an idle session's newer one goes."""
    store = PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path), max_bytes=250)

    async def kept(data: bytes, session: SessionKey) -> str:
        path = await store.save(data, FileKind.TEXT, "f.txt", session)
        await store.release([path])
        return Path(path).name

    older = await kept(b"a" * 100, A)
    await kept(b"b" * 100, SessionKey("api", "idle"))
    with store.session_running(A):
        newest = await kept(b"c" * 100, SessionKey("api", "other"))
    assert await names(db) == [older, newest]


async def names(db: PostgresDatabase) -> list[str]:
    async with db.connection() as conn:
        cursor = await conn.execute("SELECT name FROM media ORDER BY created_at")
        return [str(row[0]) for row in await cursor.fetchall()]


async def test_the_table_keeps_a_file_the_outbox_has_still_to_send(
    db: PostgresDatabase, tmp_path: Path
) -> None:
    """Over the bound, the oldest row stays while a pending event (queued by any
    replica) names it; once delivered, it goes like any other."""
    outbox = PostgresOutbox(db)
    store = PostgresMediaStore(
        db, FilesystemMediaStore.in_workspace(tmp_path), max_bytes=250, awaited=outbox
    )

    async def kept(data: bytes) -> str:
        path = await store.save(data, FileKind.TEXT, "f.txt", A)
        await store.release([path])
        return path

    queued = await kept(b"a" * 100)
    message = OutboundMessage("e1", "webhook", "ops", "see", (f"/elsewhere/{Path(queued).name}",))
    await outbox.enqueue(OutboxEvent.pending(message, now=0.0))
    await kept(b"b" * 100)
    newest = await kept(b"c" * 100)
    assert await names(db) == [Path(queued).name, Path(newest).name]
    (taken,) = (await outbox.claim_due(now=1.0, limit=1)).events
    await outbox.settle(delivered(taken, now=2.0))
    last = await kept(b"d" * 100)
    assert await names(db) == [Path(newest).name, Path(last).name]


async def test_the_bound_holds_on_a_pool_of_one_connection(
    shared_postgres_url: str, tmp_path: Path
) -> None:
    """Asking the outbox which files it awaits takes a connection from the same pool:
    the bound asks it with none of its own held, so a full pool still sheds files
    (holding one while waiting for another starved the pool, and nothing went)."""
    async with PostgresDatabase(shared_postgres_url, max_connections=1, wait_s=0.5) as db:
        try:
            store = PostgresMediaStore(
                db,
                FilesystemMediaStore.in_workspace(tmp_path),
                max_bytes=250,
                awaited=PostgresOutbox(db),
            )
            kept = []
            for n in range(4):
                path = await store.save(bytes([n]) * 100, FileKind.TEXT, f"{n}.txt", A)
                await store.release([path])
                kept.append(Path(path).name)
            assert await names(db) == kept[2:]
        finally:
            await empty_tables(db)
