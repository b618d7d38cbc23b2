"""The SessionUploads and UploadCopies contract (what the message tool and the channels
rely on), on the filesystem store and on PostgreSQL (two replicas' stores on one
database, each with its own folder)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import attrs
import pytest

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.media.postgres import PostgresMediaStore
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import scratch_database

ALICE, BOB = SessionKey("api", "alice"), SessionKey("api", "bob")
Store = FilesystemMediaStore | PostgresMediaStore


@attrs.frozen
class Stores:
    """Where files are saved, and where they are looked for (the same store on one
    machine; another replica's with PostgreSQL)."""

    saving: Store
    reading: Store


@pytest.fixture(name="stores", params=["filesystem", "postgres"])
async def _stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    if request.param == "filesystem":
        store = FilesystemMediaStore.in_workspace(tmp_path)
        yield Stores(store, store)
        return
    async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
        yield Stores(
            PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path / "a")),
            PostgresMediaStore(db, FilesystemMediaStore.in_workspace(tmp_path / "b")),
        )


async def read(path: str | None) -> bytes:
    assert path is not None
    return await anyio.Path(path).read_bytes()


async def test_a_session_finds_its_upload_by_given_name_stored_name_or_path(
    stores: Stores,
) -> None:
    saved = await stores.saving.save(b"v1", FileKind.TEXT, "notes.txt", ALICE)
    for name in ("notes.txt", Path(saved).name, saved):
        assert await read(await stores.reading.find(ALICE, name)) == b"v1", name


async def test_the_latest_upload_of_a_given_name_wins(stores: Stores) -> None:
    await stores.saving.save(b"v1", FileKind.TEXT, "notes.txt", ALICE)
    await anyio.sleep(0.02)  # mtimes and timestamps tell the two apart
    await stores.saving.save(b"v2", FileKind.TEXT, "notes.txt", ALICE)
    assert await read(await stores.reading.find(ALICE, "notes.txt")) == b"v2"


async def test_nothing_but_the_sessions_own_uploads_is_found(
    stores: Stores, tmp_path: Path
) -> None:
    theirs = await stores.saving.save(b"secret", FileKind.TEXT, "theirs.txt", BOB)
    (tmp_path / "sessions.sqlite3").write_bytes(b"SQLite format 3\x00")
    for name in (
        "theirs.txt",
        theirs,
        Path(theirs).name + ".json",
        str(tmp_path / "sessions.sqlite3"),
        "../../sessions.sqlite3",
        "",
    ):
        assert await stores.reading.find(ALICE, name) is None, name


async def test_a_copy_is_readable_here_by_the_path_it_was_saved_under(stores: Stores) -> None:
    saved = await stores.saving.save(b"%PDF-1.4", FileKind.PDF, "q3.pdf", ALICE)
    assert await read(await stores.reading.local_copy(saved)) == b"%PDF-1.4"
    # The copy keeps the client's name beside it, for the channel to show.
    copy = await stores.reading.local_copy(saved)
    assert copy is not None
    assert b'"q3.pdf"' in await anyio.Path(copy + ".json").read_bytes()


async def test_no_copy_of_anything_but_an_upload(stores: Stores, tmp_path: Path) -> None:
    saved = await stores.saving.save(b"x", FileKind.TEXT, None, ALICE)
    (tmp_path / "sessions.sqlite3").write_bytes(b"SQLite format 3\x00")
    for path in (
        saved + ".json",
        str(tmp_path / "sessions.sqlite3"),
        str(Path(saved).with_name("0" * 32 + ".txt")),
        "",
    ):
        assert await stores.reading.local_copy(path) is None, path
