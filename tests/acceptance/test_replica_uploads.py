"""An upload taken by one replica is attached by another (scale-out.md: uploads are
shared through PostgreSQL, bytes and metadata).

Two `nanobot serve` processes on one database, each with its own workspace: a file is
uploaded on A; on B the scripted model calls the ``message`` tool with that file, and
the stand-in webhook receives its bytes. An outbox event naming the file by another
machine's path is delivered from the database too.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import anyio
import httpx
import pytest

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent
from tests.acceptance.replicas import Replica, replica
from tests.platforms import WEBHOOK_SECRET, FakePlatforms
from tests.upstream import Calls, ScriptedUpstream, Text

pytestmark = pytest.mark.slow
NOTES = b"quarterly numbers, from replica A"


async def chat(where: Replica, content: object) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": content}], "session_id": "shared"}
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(f"{where.origin}/v1/chat/completions", json=body)


async def test_a_file_uploaded_on_one_replica_is_sent_by_another(
    tmp_path: Path, postgres_url: str
) -> None:
    async with FakePlatforms() as fake, ScriptedUpstream() as up:
        hook = {"enabled": True, "url": fake.webhook_url, "secret": WEBHOOK_SECRET}
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "storage": {"url": postgres_url},
            "channels": {"webhook": hook},
        }
        async with replica(tmp_path, config, "a") as a, replica(tmp_path, config, "b") as b:
            data = base64.b64encode(NOTES).decode()
            upload = {"file_data": f"data:text/plain;base64,{data}", "filename": "notes.txt"}
            parts = [{"type": "text", "text": "keep this"}, {"type": "file", "file": upload}]
            assert (await chat(a, parts)).status_code == 200

            send = {"content": "Notes", "channel": "webhook", "chat_id": "ops"}
            arguments = json.dumps({**send, "media": ["notes.txt"]})
            up.add(Calls((("message", arguments),)), Text("Sent."))
            answer = await chat(b, "send the notes to ops")
            assert answer.status_code == 200, answer.text
            with anyio.fail_after(30):
                await fake.wait_for(lambda f: len(f.messages("webhook")) >= 2)
            sent_file, text = fake.messages("webhook")
            assert (sent_file.filename, sent_file.data) == ("notes.txt", NOTES)
            assert (text.chat_id, text.text) == ("ops", "Notes")

            # An event naming the upload by a path on a machine that is gone.
            async with PostgresDatabase(postgres_url) as db:
                async with db.connection() as conn:
                    cursor = await conn.execute("SELECT name FROM media")
                    (name,) = [str(row[0]) for row in await cursor.fetchall()]
                elsewhere = f"/srv/gone/ws/media/api/{name}"
                message = OutboundMessage("ev-gone", "webhook", "ops", "again", (elsewhere,))
                await PostgresOutbox(db).enqueue(OutboxEvent.pending(message, 1.0))
            with anyio.fail_after(30):
                await fake.wait_for(lambda f: len(f.messages("webhook")) >= 4)
        again = [p for p in fake.messages("webhook") if p.event_id == "ev-gone"]
    assert [(p.filename, p.data) for p in again if p.data] == [("notes.txt", NOTES)]
