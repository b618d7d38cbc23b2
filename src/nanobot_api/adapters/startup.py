"""Start-up problems in one line each: what went wrong and what to do about it.

The operating system and SQLite report a busy port, a read-only workspace or a corrupt
database file as exceptions with tracebacks; here each becomes a StartupFailed whose
message the console entry point (and the library's ``serve()``) prints as one line
before exiting with status 2.
"""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import tempfile
from pathlib import Path

from nanobot_api.adapters.storage.private import narrow_tree, private_dir
from nanobot_api.domain.errors import StartupFailed

_BACKLOG = 1024


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port); raises
    StartupFailed for a port in use, an address not on this machine, or no permission."""
    where = f"{host}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StartupFailed(
            f"cannot bind {where}: unknown host {host!r} ({exc.strerror}); "
            "give an address of this machine with --host"
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(_BACKLOG)
    except OSError as exc:
        sock.close()
        raise _bind_failure(where, exc) from None
    return sock


def _bind_failure(where: str, exc: OSError) -> StartupFailed:
    if exc.errno == errno.EADDRINUSE:
        return StartupFailed(
            f"cannot bind {where}: the port is in use (another server running?); "
            "stop it or choose another port with --port"
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StartupFailed(
            f"cannot bind {where}: no permission (ports below 1024 need privileges); "
            "choose a port above 1023 with --port"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return StartupFailed(
            f"cannot bind {where}: the address is not one of this machine's; "
            "give another with --host"
        )
    return StartupFailed(f"cannot bind {where}: {exc.strerror or exc}")


def check_workspace(workspace: Path) -> None:
    """Creates the workspace (0700) if needed and proves it can be written; raises
    StartupFailed naming the folder otherwise. The uploads an older version kept more
    openly (``media/``, 0755 folders and 0644 files) are narrowed to 0700/0600."""
    try:
        private_dir(workspace)
        narrow_tree(workspace / "media")
        with tempfile.TemporaryFile(dir=workspace):
            pass
    except OSError as exc:
        raise StartupFailed(
            f"the workspace {workspace} cannot be written ({exc.strerror or exc}); "
            "fix its permissions or choose another with --workspace"
        ) from None


def explain_open_failure(exc: BaseException, what: str, path: Path | None) -> StartupFailed | None:
    """The one-line reason a store named ``what`` (at ``path``) could not be opened, or
    None if ``exc`` is not a failure this module knows (a fault, shown with its traceback)."""
    where = f" {path}" if path is not None else ""
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(exc, sqlite3.OperationalError):
        return StartupFailed(
            f"the {what} file{where} is not a readable SQLite database ({exc}); "
            "move it away (a new one is made) or restore it from a backup"
        )
    if isinstance(exc, sqlite3.OperationalError | OSError):
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return StartupFailed(
            f"the {what} file{where} cannot be opened ({detail}); check that the workspace "
            f"is writable by user {_user()} or choose another with --workspace"
        )
    if isinstance(exc, RuntimeError) and "newer nanobot-api" in str(exc):
        return StartupFailed(f"{exc}; upgrade nanobot-api or restore an older backup")
    return None


def _user() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())
