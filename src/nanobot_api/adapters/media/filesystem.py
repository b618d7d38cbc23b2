"""Accepted files kept on disk under fresh, unguessable names."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import anyio.to_thread

from nanobot_api.domain.filetypes import FileKind


class FilesystemMediaStore:
    """A MediaStore writing each file into ``root`` as ``<32 hex digits><extension>``.

    The name comes from ``secrets`` and the extension from the kind detected in the
    bytes, so nothing a client sends reaches a path. Each file is written to a
    temporary name, fsynced and renamed into place, so a reader (or a crash) never
    sees half a file. Its original name, MIME type and size go to a sidecar
    ``<name>.json`` written the same way first. ``root`` is created on first save.
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

    async def save(self, data: bytes, kind: FileKind, original_name: str | None) -> str:
        return await anyio.to_thread.run_sync(self._save, data, kind, original_name)

    def _save(self, data: bytes, kind: FileKind, original_name: str | None) -> str:
        self._root.mkdir(parents=True, exist_ok=True)
        name = secrets.token_hex(16) + kind.extension
        meta = {"original_name": original_name, "mime": kind.mime, "size": len(data)}
        _write_atomically(self._root / f"{name}.json", json.dumps(meta).encode())
        target = self._root / name
        _write_atomically(target, data)
        _fsync_directory(self._root)
        return str(target)


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
