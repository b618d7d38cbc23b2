"""The ForgetsUploads contract, on the filesystem store and on PostgreSQL: the uploads of
forgotten sessions go, file, metadata and row, and nothing else does."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.media.postgres import PostgresMediaStore
from nanobot_api.app.wiring.storage import UploadStore
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import scratch_database

GONE = SessionKey("api", "temporary:gone")
KEPT = SessionKey("api", "temporary:kept")


@pytest.fixture(name="store", params=["filesystem", "postgres"])
async def _store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[UploadStore]:
    local = FilesystemMediaStore.in_workspace(tmp_path)
    if request.param == "filesystem":
        yield local
        return
    async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
        yield PostgresMediaStore(db, local)


@pytest.fixture(name="root")
def _root(tmp_path: Path) -> Path:
    """Where either store keeps its copies on this machine."""
    return tmp_path / "media" / "api"


def names(root: Path) -> set[str]:
    return {path.name for path in root.iterdir()}


async def saved(store: UploadStore, session: SessionKey, *, released: bool = True) -> str:
    path = await store.save(b"GIF89a", FileKind.GIF, "pic.gif", session)
    if released:
        await store.release([path])
    return Path(path).name


async def test_a_forgotten_sessions_uploads_go_and_no_other(store: UploadStore, root: Path) -> None:
    gone = [await saved(store, GONE), await saved(store, GONE)]
    kept = await saved(store, KEPT)
    assert await store.forget_uploads([GONE], time.time() + 1) == 2
    assert names(root) == {kept, f"{kept}.json"}
    if isinstance(store, PostgresMediaStore):
        assert await store.load(gone[0]) is None
        assert await store.load(kept) is not None
    assert await store.forget_uploads([], time.time() + 1) == 0


async def test_uploads_saved_since_or_in_use_stay(store: UploadStore, root: Path) -> None:
    """A copy saved after the cut-off, or used by a turn still running, is not removed."""
    running = await saved(store, GONE, released=False)
    # A file's time comes from a coarser clock than time.time(): keep clear of it.
    await anyio.sleep(0.03)
    cut_off = time.time()
    await anyio.sleep(0.03)
    later = await saved(store, GONE)
    assert await store.forget_uploads([GONE], cut_off) == 0
    assert {running, later} <= names(root)
    if isinstance(store, PostgresMediaStore):
        assert await store.load(running) is not None


async def test_sessions_with_old_uploads_are_found_under_a_prefix(store: UploadStore) -> None:
    await saved(store, KEPT)
    await saved(store, GONE)
    await saved(store, GONE)
    await saved(store, SessionKey("api", "other"))
    await saved(store, SessionKey("api", "temporary:running"), released=False)
    assert await store.sessions_with_uploads("api:temporary:", time.time() + 1) == (GONE, KEPT)
    assert await store.sessions_with_uploads("api:temporary:", time.time() - 60) == ()
