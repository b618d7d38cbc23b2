"""Opening the workspace's SQLite files the one way both stores need."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Literal

Synchronous = Literal["FULL", "NORMAL"]
BUSY_TIMEOUT_MS = 5000


def connect_wal(
    path: Path,
    *,
    synchronous: Synchronous,
    schema: str,
    schema_version: int,
    autocheckpoint: bool = True,
) -> sqlite3.Connection:
    """A connection to ``path`` in WAL mode with ``schema`` in place (blocking).

    Autocommit (isolation_level=None): each statement is its own transaction unless a
    BEGIN opens one, and a read never leaves one open that would pin the WAL. A file
    written by a newer schema is refused rather than misread.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        _prepare(
            conn,
            path,
            synchronous=synchronous,
            schema=schema,
            schema_version=schema_version,
            autocheckpoint=autocheckpoint,
        )
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(
    conn: sqlite3.Connection,
    path: Path,
    *,
    synchronous: Synchronous,
    schema: str,
    schema_version: int,
    autocheckpoint: bool,
) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if not autocheckpoint:
        conn.execute("PRAGMA wal_autocheckpoint=0")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > schema_version:
        raise RuntimeError(f"{path} was written by a newer nanobot-api (schema {version})")
    conn.executescript(schema)
    conn.execute(f"PRAGMA user_version={schema_version}")
