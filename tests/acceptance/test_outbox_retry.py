"""`nanobot outbox retry` of an event that a live server is delivering at that moment:
refused, so no second process sends it while the first attempt runs (SQLite and
PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.domain.outbox import OutboxEvent
from tests.acceptance.test_outbox_restart import (
    MODEL,
    at_once,
    config_for,
    events,
    message_call,
    serving,
)
from tests.platforms import Fail, FakePlatforms, Hold
from tests.upstream import ScriptedUpstream, Text

# The outbox worker of a process looks at the file for events due meanwhile this often.
_POLL_S = 2.0


async def stored(tmp_path: Path, storage_url: str) -> tuple[OutboxEvent, ...]:
    """The outbox's events, read as another process would."""
    if not storage_url:
        return await events(tmp_path)
    async with PostgresDatabase(storage_url) as db:
        return await PostgresOutbox(db).events()


def arrivals(fake: FakePlatforms) -> int:
    return sum(1 for a in fake.arrivals if a.platform == "webhook")


@pytest.mark.slow
async def test_a_retry_during_a_delivery_is_refused_and_the_message_goes_out_once(
    tmp_path: Path, storage_url: str
) -> None:
    """Two worker processes share the outbox; one holds the event's delivery open while
    the operator retries it (forced or not): exit 2, one line, and the other process
    never sends it as well."""
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        # The turn's own attempt fails; the worker's retry is held open by the platform.
        fake.fail("webhook", Fail(500), Hold())
        up.add(message_call("webhook", "only once"), Text("queued it"))
        config = {**config_for(up, fake, retryBaseS=0.2), "api": {"workers": 2}}
        # Claims of the default length: the attempt holds its claim while it runs.
        config["storage"] = {"url": storage_url}
        store = ("--storage-url", storage_url) if storage_url else ()
        async with serving(tmp_path, config) as (_, origin):
            async with AsyncOpenAI(base_url=f"{origin}/v1", api_key="x", max_retries=0) as client:
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "tell ops"}]
                )
            await fake.wait_for(lambda f: arrivals(f) == 2)  # the held attempt is in flight
            (held,) = await stored(tmp_path, storage_url)
            plain, forced = await at_once(
                tmp_path,
                ("outbox", "retry", held.id, *store),
                ("outbox", "retry", "--force", held.id, *store),
            )
            await anyio.sleep(_POLL_S)  # a wrongly due event would be taken by now
            assert arrivals(fake) == 2
            fake.release()
            await fake.wait_for(lambda f: len(f.messages("webhook")) == 1)
            with anyio.fail_after(10):
                while True:  # the server writes "delivered" after the answer arrives
                    (event,) = await stored(tmp_path, storage_url)
                    if event.status != "pending":
                        break
                    await anyio.sleep(0.05)
        for code, out, err in (plain, forced):
            assert (code, out) == (2, "")
            assert err.startswith(
                f"nanobot: Event {event.id} is being delivered right now; if it has not gone "
                "out, retry it once this attempt has ended (within "
            ), err
            assert err.count("\n") == 1
        assert (event.status, event.attempts) == ("delivered", 2)
        assert [p.text for p in fake.messages("webhook")] == ["only once"]
        assert arrivals(fake) == 2
