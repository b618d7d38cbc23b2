"""Files at rest are the server user's alone: folders 0700, files 0600.

The workspace holds every conversation and upload in clear, so nothing in it is
readable by other local users, whatever the process's umask. Folders and files that
an older version created more openly are narrowed when the server opens them.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """``path`` as a folder, created with its missing parents as 0700 (blocking).

    ``Path.mkdir(parents=True)`` would give the parents the umask's mode; each level is
    made here instead. A folder that already exists keeps its mode, except ``path``
    itself, which is narrowed to 0700 when this user owns it.
    """
    missing = []
    level = path
    while not level.exists():
        missing.append(level)
        if level.parent == level:
            break
        level = level.parent
    for folder in reversed(missing):
        with contextlib.suppress(FileExistsError):  # made meanwhile by another process
            folder.mkdir(mode=DIR_MODE)
    _narrow(path, DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """``path`` created empty as 0600 if it does not exist, else narrowed to 0600
    (blocking). A store then opens it: SQLite gives its ``-wal`` and ``-shm`` files the
    database file's mode."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        _narrow(path, FILE_MODE)
    else:
        os.close(fd)
    return path


def narrow_files(*paths: Path) -> None:
    """Each of ``paths`` that exists narrowed to 0600 (blocking)."""
    for path in paths:
        _narrow(path, FILE_MODE)


def narrow_tree(root: Path) -> None:
    """``root`` and every folder below it narrowed to 0700, every file to 0600 (blocking;
    symlinks left alone, never followed). For a folder only the server writes (uploads:
    nothing in it is meant to be run), whatever an older version left there.

    A ``root`` already 0700 is not walked: nothing below it is within other users'
    reach, and the walk (one ``lstat`` per upload) would be paid at every start. The
    root is narrowed last, so a walk cut short is done again at the next start."""
    with contextlib.suppress(OSError):  # a tree that cannot be walked is left as it is
        info = root.lstat()
        if not stat.S_ISDIR(info.st_mode) or not info.st_mode & 0o777 & ~DIR_MODE:
            return
        _narrow_below(str(root), os.getuid())
        _narrow(root, DIR_MODE)


def _narrow_below(folder: str, uid: int) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if info.st_uid != uid:
                continue
            if stat.S_ISDIR(info.st_mode):
                if info.st_mode & 0o777 & ~DIR_MODE:
                    os.chmod(entry.path, DIR_MODE)
                _narrow_below(entry.path, uid)
            elif stat.S_ISREG(info.st_mode) and info.st_mode & 0o777 & ~FILE_MODE:
                os.chmod(entry.path, FILE_MODE)


def _narrow(path: Path, mode: int) -> None:
    try:
        info = path.stat()
        if info.st_uid == os.getuid() and info.st_mode & 0o777 & ~mode:
            path.chmod(mode)
    except FileNotFoundError:
        pass
