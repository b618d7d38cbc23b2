"""``nanobot storage migrate | status | import WORKSPACE``: the storage by hand.

``migrate`` and ``status`` act on the configured storage (``--storage-url``):
PostgreSQL's schema is created or updated under the same database lock a starting
server takes; SQLite files bring their own schema up to date when opened. ``import``
copies a SQLite workspace's sessions (every branch a front end made, with its
message ids), outbox, uploads and responses (with conversation records) into the
configured PostgreSQL database. It is safe
to run again: a session the database already holds turns for, an outbox event or an
upload it already has, is left as it is and counted as skipped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import anyio

from nanobot_api.adapters.cli.args import StorageCommand
from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.storage.postgres_import import import_responses
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.adapters.storage.sqlite_responses import responses_path
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.storage import OUTBOX_FILE, SESSIONS_FILE, Storage, storage_for
from nanobot_api.domain.branches import NO_IDS, StoredTurn
from nanobot_api.domain.errors import ConfigError, InvalidRequest
from nanobot_api.domain.ports import SessionStore
from nanobot_api.domain.sessions import SessionKey

EXIT_OK = 0


async def run_storage_command(command: StorageCommand, config: Config, out: TextIO) -> int:
    """Runs ``command``; returns the exit code. Raises NanobotError (one line, exit 2)."""
    storage = storage_for(config)
    if command.action == "import":
        source = command.source or Path()
        if storage.database is None:
            raise ConfigError(
                "storage.url: import copies a workspace into a PostgreSQL database; name "
                "one with --storage-url",
                param="storage.url",
            )
        await _check_source(source)
    async with storage.opened():
        if command.action == "migrate":
            return await migrate(storage, out)
        if command.action == "status":
            return await status(storage, out)
        assert storage.database is not None
        return await import_workspace(command.source or Path(), storage, out)


async def migrate(storage: Storage, out: TextIO) -> int:
    """Brings the schema up to date (opening the storage did) and says what it has."""
    if storage.database is None:
        out.write(f"SQLite files in the workspace ({storage.path}): up to date.\n")
        return EXIT_OK
    # Opening migrated already; asking again reports nothing new, which is the point.
    await storage.database.migrate()
    rows = await storage.database.schema_status()
    out.write(f"Database {storage.database.where}: schema up to date ({len(rows)} steps).\n")
    return EXIT_OK


async def status(storage: Storage, out: TextIO) -> int:
    """The backend, where it is, and each schema step with whether it is applied."""
    if storage.database is None:
        out.write(f"storage: SQLite in the workspace ({storage.path})\n")
        return EXIT_OK
    db = storage.database
    out.write(f"storage: PostgreSQL at {db.where}\n")
    for migration, applied in await db.schema_status():
        out.write(f"  {migration.name}  {'applied' if applied else 'pending'}\n")
    return EXIT_OK


async def _check_source(source: Path) -> None:
    found = await anyio.to_thread.run_sync((source / SESSIONS_FILE).is_file)
    if not found:
        raise InvalidRequest(
            f"{source}: no {SESSIONS_FILE} there; give the workspace folder of the "
            "SQLite server to import",
            param="WORKSPACE",
        )


async def import_workspace(source: Path, storage: Storage, out: TextIO) -> int:
    """Copies ``source``'s sessions, outbox events, uploads and responses into
    ``storage``."""
    sessions = turns = skipped_sessions = 0
    async with SqliteSessionStore(source / SESSIONS_FILE) as old:
        present = await storage.sessions.sessions()
        for key in sorted(await old.sessions(), key=str):
            if key in present:
                skipped_sessions += 1
                continue
            turns += await _import_turns(key, await old.turns(key), storage.sessions)
            sessions += 1
    events = skipped_events = 0
    if await anyio.to_thread.run_sync((source / OUTBOX_FILE).is_file):
        async with SqliteOutbox(source / OUTBOX_FILE) as old_outbox:
            for event in await old_outbox.events():
                try:
                    await storage.outbox.enqueue(event)
                    events += 1
                except ValueError:  # already imported
                    skipped_events += 1
    files, skipped_files = await _import_media(source, storage)
    responses = skipped_responses = 0
    if storage.database is not None:
        responses, skipped_responses = await import_responses(
            responses_path(source), storage.database
        )
    out.write(
        f"Imported {sessions} sessions ({turns} turns), {events} outbox events, "
        f"{files} uploads and {responses} responses into "
        f"{storage.database.where if storage.database else storage.path}; skipped "
        f"{skipped_sessions} sessions, {skipped_events} events, {skipped_files} uploads "
        f"and {skipped_responses} responses already there.\n"
    )
    return EXIT_OK


async def _import_turns(
    key: SessionKey, stored: Sequence[StoredTurn], sessions: SessionStore
) -> int:
    """Writes a session's turns, every branch with its front end's ids, in their order;
    returns how many. The source's active branch ends active again: its latest turn is
    always on it (every write appends to the branch it makes active)."""
    numbers: dict[int, int] = {}  # the source's turn numbers -> the new store's
    parents: dict[int, int | None] = {}
    active: list[int] = []
    for turn in stored:
        chain: list[int] = []
        at = None if turn.parent is None else numbers.get(turn.parent)
        while at is not None:
            chain.append(at)
            at = parents[at]
        chain.reverse()
        if chain == active and turn.ids == NO_IDS:
            await sessions.commit(key, turn.record)  # the common case: one more turn
        else:
            await sessions.commit_branch(key, chain, (), turn.record, turn.ids)
        number = len(numbers) + 1
        numbers[turn.no] = number
        parents[number] = chain[-1] if chain else None
        active = [*chain, number]
    return len(numbers)


async def _import_media(source: Path, storage: Storage) -> tuple[int, int]:
    from nanobot_api.adapters.media.postgres import PostgresMediaStore

    media = storage.media
    if not isinstance(media, PostgresMediaStore):
        return 0, 0
    root = FilesystemMediaStore.in_workspace(source).root
    imported = skipped = 0
    for sidecar in await anyio.to_thread.run_sync(lambda: sorted(root.glob("*.json"))):
        upload = await anyio.to_thread.run_sync(_read_upload, sidecar)
        if upload is None:
            continue
        name, data, meta = upload
        if await media.adopt(name, data, meta):
            imported += 1
        else:
            skipped += 1
    return imported, skipped


def _read_upload(sidecar: Path) -> tuple[str, bytes, dict[str, object]] | None:
    """An upload's name, bytes and metadata (its sidecar), or None if either is gone."""
    target = sidecar.with_name(sidecar.name.removesuffix(".json"))
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        data = target.read_bytes()
    except (OSError, ValueError):
        return None
    return (target.name, data, meta) if isinstance(meta, dict) else None
