"""Accepted files kept on disk under fresh, unguessable names."""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import anyio.to_thread

from nanobot_api.adapters.media.spared import RunningSession, awaited_files
from nanobot_api.adapters.storage.private import private_dir
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.ports import AwaitedFiles
from nanobot_api.domain.sessions import SessionKey

_SIDECAR = ".json"


class FilesystemMediaStore:
    """A MediaStore writing each file into ``root`` as ``<32 hex digits><extension>``.

    The name comes from ``secrets`` and the extension from the kind detected in the
    bytes, so nothing a client sends reaches a path. Each file is written to a
    temporary name, fsynced and renamed into place, so a reader (or a crash) never
    sees half a file. Its original name, MIME type, size and session go to a sidecar
    ``<name>.json`` written the same way first. ``root`` is created (0700) on first save.

    With ``max_bytes``, the folder is bounded: a save that takes it over the bound, or a
    turn ending while it is over, removes the oldest files of idle sessions first, then
    the oldest of sessions with a turn running (it may still send one of its session's
    earlier uploads), and never one that a turn still running uses (saved and not yet
    released or discarded). A session counts as running while a turn of it runs here
    (``session_running``) or holds an upload it saved. Nor does it ever remove a file
    that a message accepted but not yet delivered will send (``awaited``, the outbox):
    the folder stays over the bound rather than lose one.

    It is also the SessionUploads port: a file is found for a session only through its
    sidecar in ``root``, so no path a model writes can reach anything else (the
    workspace's databases above all: opening and closing one of their files in-process
    would drop SQLite's locks). And UploadCopies: an upload's copy is the file of that
    name in ``root``.
    """

    def __init__(
        self, root: Path, *, max_bytes: int | None = None, awaited: AwaitedFiles | None = None
    ) -> None:
        self._root = root
        self._max_bytes = max_bytes
        self._awaited = awaited
        self._in_use: Counter[str] = Counter()
        self._session_of: dict[str, str] = {}  # of the copies in use that have a session
        self._running: Counter[str] = Counter()  # sessions with a turn running here
        self._usage: int | None = None  # bytes in the folder, counted on first need

    @classmethod
    def in_workspace(
        cls, workspace: Path, *, max_bytes: int | None = None, awaited: AwaitedFiles | None = None
    ) -> FilesystemMediaStore:
        """The store of API uploads: ``<workspace>/media/api/``."""
        return cls(workspace / "media" / "api", max_bytes=max_bytes, awaited=awaited)

    @property
    def root(self) -> Path:
        return self._root

    async def save(
        self,
        data: bytes,
        kind: FileKind,
        original_name: str | None,
        session: SessionKey | None = None,
    ) -> str:
        path = await anyio.to_thread.run_sync(self._save, data, kind, original_name, session)
        self._in_use[path] += 1
        if session is not None:
            self._session_of[path] = str(session)
        await self._keep_within(len(data))
        return path

    async def release(self, paths: Iterable[str]) -> None:
        """The files' turn has ended and kept them: they may go when the folder is full
        (now, if it is over the bound: the files that kept it over may be free now)."""
        for path in paths:
            self._forget(path)
        await self._keep_within(0)

    def session_running(self, session: SessionKey) -> AbstractContextManager[None]:
        """While the block runs, ``session``'s uploads go after every idle session's."""
        return RunningSession(self._running, str(session))

    def busy_sessions(self) -> frozenset[str]:
        """The sessions (as ``str(SessionKey)``) with a turn running here, or whose
        copies running turns use."""
        in_use = (self._session_of[path] for path in self._in_use if path in self._session_of)
        return frozenset((*self._running, *in_use))

    async def _keep_within(self, added: int) -> None:
        if self._max_bytes is None:
            return
        if not added and self._usage is not None and self._usage <= self._max_bytes:
            return  # a turn ending with the folder within the bound: no thread hop
        if not await anyio.to_thread.run_sync(self._over_bound, added):
            return
        # Asked only when something must go: the outbox is another store's file.
        awaited = await awaited_files(self._awaited)
        if awaited is None:
            return
        # What is in use is read here, on the event loop, where it changes; the thread
        # gets a snapshot.
        in_use = frozenset(self._in_use)
        busy = self.busy_sessions()
        await anyio.to_thread.run_sync(self._shrink, in_use, busy, awaited)

    async def discard(self, paths: Iterable[str]) -> None:
        """The files' turn failed: they are removed with their metadata."""
        gone = [path for path in paths if self._forget(path)]
        await anyio.to_thread.run_sync(self._remove, gone)

    async def forget_uploads(self, sessions: Collection[SessionKey], saved_before: float) -> int:
        """Removes the copies of ``sessions`` saved before ``saved_before`` (by their
        sidecar's time), with their sidecars, but none a running turn uses."""
        names = {str(session) for session in sessions}
        if not names:
            return 0
        return await anyio.to_thread.run_sync(self._forget_uploads, names, saved_before)

    async def sessions_with_uploads(
        self, key_prefix: str, saved_before: float
    ) -> tuple[SessionKey, ...]:
        """The sessions under ``key_prefix`` with a copy here saved before ``saved_before``
        that no running turn uses, in key order."""
        found = await anyio.to_thread.run_sync(
            self._sessions_with_uploads, key_prefix, saved_before
        )
        return tuple(SessionKey.parse(name) for name in sorted(found))

    def in_use(self) -> frozenset[str]:
        """The stored names of the copies that running turns use."""
        return frozenset(Path(path).name for path in self._in_use)

    def _forget_uploads(self, sessions: set[str], saved_before: float) -> int:
        gone = 0
        for _, path in self._saved(sessions.__contains__, saved_before):
            freed = _drop(path)
            if self._usage is not None:
                self._usage -= freed
            gone += 1
        return gone

    def _sessions_with_uploads(self, prefix: str, saved_before: float) -> set[str]:
        return {name for name, _ in self._saved(lambda s: s.startswith(prefix), saved_before)}

    def _saved(
        self, session: Callable[[str], bool], saved_before: float
    ) -> Iterator[tuple[str, Path]]:
        """(session, copy) of each copy of a session ``session`` accepts, saved
        before ``saved_before`` and not in use. One pass over the sidecars: only the
        temporary chats' sweep asks."""
        for sidecar in _sidecars(self._root):
            name = _session_in(sidecar)
            if name is None or not session(name):
                continue
            path = sidecar.with_name(sidecar.name.removesuffix(_SIDECAR))
            if str(path) in self._in_use:
                continue
            try:
                saved = sidecar.stat().st_mtime
            except OSError:
                continue  # removed meanwhile
            if saved < saved_before:
                yield name, path

    def _forget(self, path: str) -> bool:
        if self._in_use[path] <= 1:
            self._in_use.pop(path, None)
            self._session_of.pop(path, None)
            return True
        self._in_use[path] -= 1
        return False

    def _remove(self, paths: list[str]) -> None:
        for path in paths:
            freed = _drop(Path(path))
            if self._usage is not None:
                self._usage -= freed

    def _over_bound(self, added: int) -> bool:
        """Counts ``added`` bytes in; whether the folder is over the bound now."""
        if self._usage is None:
            self._usage = sum(size for _, size, _ in _files(self._root))
        else:
            self._usage += added
        return self._max_bytes is not None and self._usage > self._max_bytes

    def _shrink(
        self, in_use: frozenset[str], busy: frozenset[str], awaited: frozenset[str]
    ) -> None:
        limit = self._max_bytes
        if limit is None or self._usage is None or self._usage <= limit:
            return
        # Oldest first, idle sessions' files before busy ones' (a sidecar is read only
        # for the files looked at); the sidecar (.json) goes with its file.
        candidates = sorted(
            (mtime, path)
            for mtime, _size, path in _files(self._root)
            if path.suffix != _SIDECAR and str(path) not in in_use and path.name not in awaited
        )
        later: list[Path] = []
        for _mtime, path in candidates:
            if self._usage <= limit:
                return
            if busy and _session(path) in busy:
                later.append(path)
            else:
                self._usage -= _drop(path)
        for path in later:
            if self._usage <= limit:
                return
            self._usage -= _drop(path)

    async def local_copy(self, path: str) -> str | None:
        """The file in ``root`` named as ``path``'s last part, if there is one."""
        name = Path(path).name
        if not _is_stored_name(name):
            return None
        return await anyio.to_thread.run_sync(self._checked, name)

    async def keep(self, name: str, data: bytes, meta: dict[str, object]) -> str | None:
        """Writes a working copy of a file the store saved elsewhere (another replica)
        under its stored ``name``, with its metadata; returns its path (None for a name
        no upload could have). Counted in the folder's bound like any upload."""
        if not _is_stored_name(name):
            return None
        path = await anyio.to_thread.run_sync(self._keep, name, data, meta)
        await self._keep_within(len(data))
        return path

    def _keep(self, name: str, data: bytes, meta: dict[str, object]) -> str:
        private_dir(self._root)
        # Two deliveries may fetch the same file at once: each writes its own temporary
        # file, and the last rename wins with the same bytes.
        unique = secrets.token_hex(4)
        sidecar = self._root / f"{name}{_SIDECAR}"
        _write_atomically(sidecar, json.dumps(meta).encode(), unique)
        target = self._root / name
        _write_atomically(target, data, unique)
        _fsync_directory(self._root)
        return str(target)

    def _save(
        self, data: bytes, kind: FileKind, original_name: str | None, session: SessionKey | None
    ) -> str:
        private_dir(self._root)
        name = secrets.token_hex(16) + kind.extension
        meta = {
            "original_name": original_name,
            "mime": kind.mime,
            "size": len(data),
            "session": None if session is None else str(session),
        }
        _write_atomically(self._root / f"{name}{_SIDECAR}", json.dumps(meta).encode())
        target = self._root / name
        _write_atomically(target, data)
        _fsync_directory(self._root)
        return str(target)

    async def find(self, session: SessionKey, name: str) -> str | None:
        return await anyio.to_thread.run_sync(self._find, str(session), name)

    def _find(self, session: str, name: str) -> str | None:
        stored = Path(name).name
        if _is_stored_name(stored):
            meta = _sidecar(self._root / f"{stored}{_SIDECAR}")
            if meta is not None and meta.get("session") == session:
                return self._checked(stored)
        # Else the name the client gave it: the latest of this session's uploads so named.
        found: tuple[float, str] | None = None
        for path in _sidecars(self._root):
            meta = _sidecar(path)
            if meta is None or meta.get("session") != session:
                continue
            if meta.get("original_name") != name:
                continue
            try:
                mtime = path.stat().st_mtime
            except OSError:
                continue  # removed meanwhile
            if found is None or mtime > found[0]:
                found = (mtime, path.name.removesuffix(_SIDECAR))
        return None if found is None else self._checked(found[1])

    def _checked(self, stored: str) -> str | None:
        """The copy's path, if it is a regular file right in ``root`` (no symlink)."""
        path = self._root / stored
        try:
            if path.is_symlink() or not path.is_file():
                return None
        except OSError:
            return None
        return str(path)


def _is_stored_name(name: str) -> bool:
    """Whether ``name`` could be an upload's copy in the folder (not a temporary file,
    a sidecar, or anything with a path in it)."""
    return (
        bool(name)
        and name == Path(name).name
        and not name.startswith(".")
        and (not name.endswith(_SIDECAR))
    )


def _sidecar(path: Path) -> dict[str, object] | None:
    if path.is_symlink():
        return None
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _drop(path: Path) -> int:
    """Removes a copy and its sidecar; the bytes freed."""
    return _unlink(path) + _unlink(path.with_name(path.name + _SIDECAR))


def _session(path: Path) -> str | None:
    """The session a copy was uploaded in, by its sidecar (None if unknown)."""
    return _session_in(path.with_name(path.name + _SIDECAR))


def _session_in(sidecar: Path) -> str | None:
    meta = _sidecar(sidecar)
    name = None if meta is None else meta.get("session")
    return name if isinstance(name, str) else None


def _sidecars(root: Path) -> list[Path]:
    """Every sidecar in ``root`` (none if it cannot be listed)."""
    try:
        return list(root.glob(f"*{_SIDECAR}"))
    except OSError:
        return []


def _files(root: Path) -> Iterator[tuple[float, int, Path]]:
    """(modified time, size, path) of every file in ``root`` but temporaries."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        yield info.st_mtime, info.st_size, Path(entry.path)


def _unlink(path: Path) -> int:
    """Removes ``path``; the bytes freed (0 if it was already gone)."""
    try:
        size = path.stat().st_size
        path.unlink()
    except FileNotFoundError:
        return 0
    return size


def _write_atomically(target: Path, data: bytes, unique: str = "") -> None:
    temporary = target.with_name(f".{target.name}{unique}.tmp")
    # O_EXCL: a fresh random name never exists; if it does, something is wrong.
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    # The renames are durable only once the directory entry is on disk too.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
