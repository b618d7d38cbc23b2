from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import anyio
import pytest

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.domain.errors import StorageUnavailable
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent, delivered
from nanobot_api.domain.ports import MediaStore
from nanobot_api.domain.sessions import SessionKey
from tests.fakes import InMemoryOutbox

_ALICE = SessionKey("api", "alice")
_BOB = SessionKey("api", "bob")


def _bytes(path: str | Path) -> bytes:
    # Reading a small file in a test needs no worker thread.
    return Path(path).read_bytes()


@pytest.fixture(name="store")
def _store(tmp_path: Path) -> FilesystemMediaStore:
    return FilesystemMediaStore.in_workspace(tmp_path)


async def test_a_saved_file_lies_under_media_api_with_its_bytes(
    store: FilesystemMediaStore, tmp_path: Path
) -> None:
    path = Path(await store.save(b"\x89PNG data", FileKind.PNG, "cat.png"))
    assert path.parent == tmp_path / "media" / "api"
    assert _bytes(path) == b"\x89PNG data"


async def test_the_name_is_fresh_random_hex_with_the_detected_extension(
    store: FilesystemMediaStore,
) -> None:
    first = Path(await store.save(b"a", FileKind.PDF, "report.exe"))
    second = Path(await store.save(b"a", FileKind.PDF, "report.exe"))
    assert first != second
    assert re.fullmatch(r"[0-9a-f]{32}\.pdf", first.name)


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/abs/evil.sh", "..\\..\\x.docx", "a\x00b", "", None]
)
async def test_the_client_name_never_reaches_the_path(
    store: FilesystemMediaStore, name: str | None
) -> None:
    path = Path(await store.save(b"x", FileKind.TEXT, name))
    assert path.parent == store.root
    assert re.fullmatch(r"[0-9a-f]{32}\.txt", path.name)


async def test_the_original_name_is_kept_as_metadata(store: FilesystemMediaStore) -> None:
    path = Path(await store.save(b"abc", FileKind.DOCX, "../Q3 report.docx", _ALICE))
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta == {
        "original_name": "../Q3 report.docx",
        "mime": FileKind.DOCX.mime,
        "size": 3,
        "session": "api:alice",
    }


async def test_a_session_finds_its_uploads_by_given_name_stored_name_or_path(
    store: FilesystemMediaStore,
) -> None:
    older = await store.save(b"v1", FileKind.TEXT, "notes.txt", _ALICE)
    os.utime(older, (1, 1))
    os.utime(older + ".json", (1, 1))
    newer = await store.save(b"v2", FileKind.TEXT, "notes.txt", _ALICE)
    assert await store.find(_ALICE, "notes.txt") == newer
    assert await store.find(_ALICE, Path(older).name) == older
    assert await store.find(_ALICE, older) == older


async def test_nothing_but_the_sessions_own_uploads_is_found(
    store: FilesystemMediaStore, tmp_path: Path
) -> None:
    """Another session's upload, the workspace's databases, a sidecar, a path outside."""
    theirs = await store.save(b"secret", FileKind.TEXT, "theirs.txt", _BOB)
    (tmp_path / "sessions.sqlite3").write_bytes(b"SQLite format 3\x00")
    for name in (
        "theirs.txt",
        theirs,
        Path(theirs).name,
        Path(theirs).name + ".json",
        "sessions.sqlite3",
        str(tmp_path / "sessions.sqlite3"),
        "../../sessions.sqlite3",
        "",
    ):
        assert await store.find(_ALICE, name) is None, name


async def test_no_temporary_file_is_left_and_files_are_private(
    store: FilesystemMediaStore,
) -> None:
    path = Path(await store.save(b"abc", FileKind.GIF, None))
    assert sorted(p.name for p in store.root.iterdir()) == sorted([path.name, path.name + ".json"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_concurrent_saves_all_land(store: FilesystemMediaStore) -> None:
    paths: list[str] = []

    async def save(n: int) -> None:
        paths.append(await store.save(bytes([n]) * 100, FileKind.PNG, f"{n}.png"))

    async with anyio.create_task_group() as tg:
        for n in range(20):
            tg.start_soon(save, n)
    assert len(set(paths)) == 20
    assert {_bytes(p)[0] for p in paths} == set(range(20))


async def test_a_refused_write_raises_and_leaves_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "media"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OSError):  # noqa: PT011 - the disk's error, whatever it is
        await FilesystemMediaStore.in_workspace(tmp_path).save(b"x", FileKind.PNG, None)
    assert blocker.read_text() == "a file where the folder should be"


def test_it_implements_the_port(tmp_path: Path) -> None:
    port: MediaStore = FilesystemMediaStore(tmp_path)
    assert port is not None


def _copies(root: Path) -> set[str]:
    # Listing a small folder in a test needs no worker thread.
    return {path.name for path in root.iterdir() if path.suffix != ".json"}


class _Unreadable:
    """An outbox whose file cannot be read now."""

    async def awaited_files(self) -> frozenset[str]:
        raise StorageUnavailable("the outbox cannot be read", retry_after_s=1.0)


async def test_over_the_bound_a_file_the_outbox_has_still_to_send_stays(tmp_path: Path) -> None:
    """The outbox's files stay, oldest or not, until their event is delivered; while the
    outbox cannot be read, nothing goes."""
    outbox = InMemoryOutbox()
    store = FilesystemMediaStore(tmp_path, max_bytes=250, awaited=outbox)

    async def kept(data: bytes, session: SessionKey) -> str:
        path = await store.save(data, FileKind.TEXT, "f.txt", session)
        await store.release([path])
        return path

    queued = await kept(b"a" * 100, _ALICE)
    os.utime(queued, (1.0, 1.0))  # the oldest by far
    message = OutboundMessage("e1", "webhook", "ops", "see", (queued,))
    await outbox.enqueue(OutboxEvent.pending(message, now=0.0))
    idle = await kept(b"b" * 100, _BOB)
    newest = await kept(b"c" * 100, _BOB)  # 300 bytes: the oldest that may go is idle's
    assert _copies(tmp_path) == {Path(queued).name, Path(newest).name}
    assert Path(idle).name not in _copies(tmp_path)
    (taken,) = (await outbox.claim_due(now=1.0, limit=1)).events
    await outbox.settle(delivered(taken, now=2.0))
    await kept(b"d" * 100, _BOB)  # delivered: an upload like any other, the oldest goes
    assert Path(queued).name not in _copies(tmp_path)
    blind = FilesystemMediaStore(tmp_path, max_bytes=1, awaited=_Unreadable())
    await blind.release([await blind.save(b"e" * 100, FileKind.TEXT, None, _BOB)])
    assert len(_copies(tmp_path)) == 3
