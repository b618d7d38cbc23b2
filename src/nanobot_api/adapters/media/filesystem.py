"""Accepted files kept on disk under fresh, unguessable names."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import anyio.to_thread

from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.sessions import SessionKey

_SIDECAR = ".json"


class FilesystemMediaStore:
    """A MediaStore writing each file into ``root`` as ``<32 hex digits><extension>``.

    The name comes from ``secrets`` and the extension from the kind detected in the
    bytes, so nothing a client sends reaches a path. Each file is written to a
    temporary name, fsynced and renamed into place, so a reader (or a crash) never
    sees half a file. Its original name, MIME type, size and session go to a sidecar
    ``<name>.json`` written the same way first. ``root`` is created on first save.

    It is also the SessionUploads port: a file is found for a session only through its
    sidecar in ``root``, so no path a model writes can reach anything else (the
    workspace's databases above all: opening and closing one of their files in-process
    would drop SQLite's locks).
    """

    def __init__(self, root: Path) -> None:
        self._root = root

    @classmethod
    def in_workspace(cls, workspace: Path) -> FilesystemMediaStore:
        """The store of API uploads: ``<workspace>/media/api/``."""
        return cls(workspace / "media" / "api")

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
        return await anyio.to_thread.run_sync(self._save, data, kind, original_name, session)

    def _save(
        self, data: bytes, kind: FileKind, original_name: str | None, session: SessionKey | None
    ) -> str:
        self._root.mkdir(parents=True, exist_ok=True)
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
        if stored and not stored.startswith(".") and not stored.endswith(_SIDECAR):
            meta = _sidecar(self._root / f"{stored}{_SIDECAR}")
            if meta is not None and meta.get("session") == session:
                return self._checked(stored)
        # Else the name the client gave it: the latest of this session's uploads so named.
        found: tuple[float, str] | None = None
        try:
            sidecars = list(self._root.glob(f"*{_SIDECAR}"))
        except OSError:
            return None
        for path in sidecars:
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


def _sidecar(path: Path) -> dict[str, object] | None:
    if path.is_symlink():
        return None
    try:
        meta = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _write_atomically(target: Path, data: bytes) -> None:
    temporary = target.with_name(f".{target.name}.tmp")
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
