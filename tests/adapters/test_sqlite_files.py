"""What every SQLite file of the workspace shares (adapters/storage/sqlite_files.py)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Barrier
from pathlib import Path

from nanobot_api.adapters.storage.sqlite_files import connect_wal

SCHEMA = "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, body TEXT NOT NULL);"


def _open_together(path: str, start: Barrier) -> None:
    start.wait()
    conn = connect_wal(Path(path), synchronous="NORMAL", schema=SCHEMA, schema_version=1)
    conn.execute(
        "INSERT INTO events VALUES (?, 'x')", (str(multiprocessing.current_process().pid),)
    )
    conn.close()


def test_two_processes_making_the_same_new_file_at_once_both_open_it(tmp_path: Path) -> None:
    """As the workers of `serve --workers 2` do with a file the workspace does not hold
    yet: neither start fails with "database is locked" (it did about one in three)."""
    forking = multiprocessing.get_context("fork")
    for round_ in range(15):
        path = str(tmp_path / f"{round_}.sqlite3")
        start = forking.Barrier(2)
        workers = [forking.Process(target=_open_together, args=(path, start)) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(30)
        assert [worker.exitcode for worker in workers] == [0, 0], f"round {round_}"
        conn = connect_wal(Path(path), synchronous="NORMAL", schema=SCHEMA, schema_version=1)
        assert conn.execute("SELECT COUNT(*) FROM events").fetchone() == (2,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        conn.close()
