"""`nanobot storage migrate | status | import` as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.storage.postgres import PostgresSessionStore
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.adapters.storage.postgres_responses import (
    PostgresConversationStore,
    PostgresResponseStore,
)
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.adapters.storage.sqlite_responses import (
    SqliteConversationStore,
    SqliteResponseStore,
)
from nanobot_api.domain.branches import MessageIds
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.conversations import ConversationRecord
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent, claimed, parked
from nanobot_api.domain.responses import ResponseRecord, TextDelta
from nanobot_api.domain.sessions import SessionKey
from tests.acceptance.test_cli import run_nanobot

pytestmark = pytest.mark.slow


def test_status_and_migrate_show_the_schema_of_a_database(
    tmp_path: Path, postgres_url: str
) -> None:
    where = ["--storage-url", postgres_url]
    migrated = run_nanobot("storage", "migrate", *where, home=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "schema up to date" in migrated.stdout
    status = run_nanobot("storage", "status", *where, home=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "storage: PostgreSQL at 127.0.0.1:" in status.stdout
    assert "0001-sessions  applied" in status.stdout
    assert "pending" not in status.stdout
    assert "postgres@" not in status.stdout  # no credentials, only where


def test_status_of_the_default_storage_names_the_sqlite_file(tmp_path: Path) -> None:
    status = run_nanobot("storage", "status", "-w", str(tmp_path / "ws"), home=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "SQLite" in status.stdout
    assert "sessions.sqlite3" in status.stdout


async def seed_workspace(workspace: Path) -> None:
    async with SqliteSessionStore(workspace / "sessions.sqlite3") as store:
        for session, texts in (("alpha", ["one", "two"]), ("beta", ["other"])):
            for text in texts:
                record = TurnRecord((Message.user(text), Message.assistant(f"re {text}")))
                await store.commit(SessionKey("api", session), record)
        # A front end's edit: turn 2 superseded by turn 3 on another branch.
        gamma = SessionKey("api", "gamma")
        for text in ("q1", "q2"):
            await store.commit(gamma, TurnRecord((Message.user(text), Message.assistant("a"))))
        edited = TurnRecord((Message.user("q2 edited"), Message.assistant("b")))
        await store.commit_branch(gamma, [1], (), edited, MessageIds("u3", "a3", "a1"))
    async with SqliteOutbox(workspace / "outbox.sqlite3") as outbox:
        await outbox.enqueue(OLD_EVENT)
    media = FilesystemMediaStore.in_workspace(workspace)
    await media.save(b"%PDF-1.4 test", FileKind.PDF, "report.pdf", SessionKey("api", "alpha"))
    async with SqliteResponseStore(workspace / "responses.sqlite3") as responses:
        for n in (1, 2):
            await responses.put(response(n))
        await responses.append("resp_2", 0, [TextDelta("hel"), TextDelta("lo")])
        await responses.note(SessionKey("api", "alpha"), ["call_7"])
    async with SqliteConversationStore(workspace / "responses.sqlite3") as records:
        await records.put(ConversationRecord(SessionKey("api", "alpha"), 5.0, (("k", "v"),)))


# Queued after one attempt found its channel switched off: its record goes along.
OLD_EVENT = parked(
    claimed(
        OutboxEvent.pending(OutboundMessage("ev1", "telegram", "42", "queued while off"), 1.7e9),
        1.7e9,
        "old-host pid 1",
    ),
    1.7e9 + 1,
)


def response(n: int) -> ResponseRecord:
    return ResponseRecord(
        id=f"resp_{n}",
        session=SessionKey("api", "alpha"),
        model="m",
        created_at=1000.0 + n,
        background=n == 2,
        named=True,
        previous_response_id=None if n == 1 else "resp_1",
        instructions=None,
        input=(Message.user(f"q{n}"),),
        status="completed",
        output_text=f"answer {n}",
    )


async def test_import_moves_a_sqlite_workspace_into_the_database_once(
    tmp_path: Path, postgres_url: str
) -> None:
    old = tmp_path / "old-workspace"
    await seed_workspace(old)
    where = ["--storage-url", postgres_url, "-w", str(tmp_path / "new")]
    imported = run_nanobot("storage", "import", str(old), *where, home=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert (
        "Imported 3 sessions (6 turns), 1 outbox events, 1 uploads and 2 responses"
        in imported.stdout
    )
    gamma = SessionKey("api", "gamma")
    async with SqliteSessionStore(old / "sessions.sqlite3") as source:
        expected = await source.turns(gamma)
    async with PostgresDatabase(postgres_url) as db:
        assert await PostgresSessionStore(db).turns(gamma) == expected  # every branch
        responses = PostgresResponseStore(db)
        assert await responses.get("resp_1") == response(1)
        assert await responses.latest(SessionKey("api", "alpha")) == response(2)
        assert await responses.read("resp_2") == (TextDelta("hel"), TextDelta("lo"))
        assert await responses.find(["call_7"], "api") == SessionKey("api", "alpha")
        conversation = await PostgresConversationStore(db).get(SessionKey("api", "alpha"))
        assert conversation == ConversationRecord(SessionKey("api", "alpha"), 5.0, (("k", "v"),))
        assert await PostgresOutbox(db).event("ev1") == OLD_EVENT

    listed = run_nanobot("sessions", "list", *where, home=tmp_path)
    assert "api:alpha  2 turns" in listed.stdout
    shown = run_nanobot("sessions", "show", "api:alpha", *where, home=tmp_path)
    assert shown.stdout.index("one") < shown.stdout.index("two")
    events = run_nanobot("outbox", "list", *where, home=tmp_path)
    assert "ev1" in events.stdout

    again = run_nanobot("storage", "import", str(old), *where, home=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "Imported 0 sessions (0 turns), 0 outbox events, 0 uploads and 0 responses" in (
        again.stdout
    )
    assert "skipped 3 sessions, 1 events, 1 uploads and 2 responses" in again.stdout


def test_import_needs_a_database_and_a_workspace(tmp_path: Path, postgres_url: str) -> None:
    no_db = run_nanobot("storage", "import", str(tmp_path), home=tmp_path)
    assert no_db.returncode == 2
    assert len(no_db.stderr.strip().splitlines()) == 1
    assert "storage.url" in no_db.stderr
    config = tmp_path / "c.json"
    config.write_text(json.dumps({}))
    no_source = run_nanobot(
        "storage",
        "import",
        str(tmp_path / "nothing"),
        "--storage-url",
        postgres_url,
        home=tmp_path,
    )
    assert no_source.returncode == 2
    assert "sessions.sqlite3" in no_source.stderr
