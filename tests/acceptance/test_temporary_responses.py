"""A temporary chat reached through the Responses API (``conversation: "temporary:..."``)
leaves nothing in the Responses tables either once idle for ``api.temporaryTtlS``: its
responses and their steps, the calls its paused turn waits for, its conversation record;
and a failed response of a temporary chat that never stored a turn goes too. Through a
real socket, on SQLite and PostgreSQL, read back through each backend's stores."""

from __future__ import annotations

import anyio
import openai
import pytest
from openai import AsyncOpenAI

from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.app.wiring.responses import response_stores
from nanobot_api.domain.sessions import SessionKey
from tests.acceptance.test_open_webui_replay import backend_of, open_webui_backend
from tests.acceptance.test_temporary_chats import with_ttl
from tests.client_tools import RESPONSES_WEATHER
from tests.upstream import Calls, ScriptedUpstream, Status, Text

TEMPORARY = "temporary:resp"


async def finished(client: AsyncOpenAI, response_id: str) -> str:
    """The status of a background response once it ended."""
    with anyio.fail_after(10):
        while True:
            status = (await client.responses.retrieve(response_id)).status
            if status not in ("queued", "in_progress"):
                return str(status)
            await anyio.sleep(0.02)


async def until_gone(client: AsyncOpenAI, response_ids: list[str]) -> None:
    """Polls, as a client would, until none of the responses can be read (the sweeps
    run every TTL / 4, the pass for chats without turns every TTL)."""
    with anyio.fail_after(10):
        for response_id in response_ids:
            while True:
                try:
                    await client.responses.retrieve(response_id)
                except openai.NotFoundError:
                    break
                await anyio.sleep(0.05)


@pytest.mark.slow
async def test_a_temporary_chat_leaves_nothing_in_the_responses_tables(
    config: Config, storage_url: str
) -> None:
    async with ScriptedUpstream() as up:
        served = with_ttl(open_webui_backend(config, up.base_url, storage_url), 1.5)
        async with (
            running_server(build(served)) as server,
            AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
        ):
            kept = await client.responses.create(input="keep me", conversation="kept")
            # A temporary chat that never stores a turn: its background response fails.
            up.add(Status(400, "refused"))
            failed = await client.responses.create(
                input="fail", conversation="temporary:failed", background=True
            )
            assert await finished(client, failed.id) == "failed"
            # The temporary chat: a background response (steps), a foreground one, a
            # conversation record, and a turn paused on a client tool.
            up.add(Text("from the background"), Text("hello"), Calls((("get_weather", "{}"),)))
            background = await client.responses.create(
                input="bg", conversation=TEMPORARY, background=True
            )
            assert await finished(client, background.id) == "completed"
            plain = await client.responses.create(input="hi", conversation=TEMPORARY)
            await client.conversations.update(TEMPORARY, metadata={"k": "v"})
            paused = await client.responses.create(
                input="weather?", conversation=TEMPORARY, tools=[RESPONSES_WEATHER]
            )
            (call,) = [o for o in paused.output if o.type == "function_call"]

            temporary_ids = [failed.id, background.id, plain.id, paused.id]
            await until_gone(client, temporary_ids)

            assert (await client.responses.retrieve(kept.id)).output_text == "echo: keep me"
            with pytest.raises(openai.NotFoundError):
                await client.conversations.retrieve(TEMPORARY)
            async with backend_of(served).opened() as backend:
                stores = response_stores(served.workspace, backend.database)
                responses, records = stores.responses, stores.conversations
                try:
                    for response_id in temporary_ids:
                        assert await responses.get(response_id) is None
                        assert await responses.read(response_id) == ()
                    assert await responses.find([call.call_id], "api") is None
                    assert await records.get(SessionKey("api", TEMPORARY)) is None
                    for store in stores.records:
                        assert await store.sessions_with_records("api:temporary:", 1e12) == ()
                    assert await responses.get(kept.id) is not None
                    assert set(await backend.sessions.sessions()) == {SessionKey("api", "kept")}
                finally:
                    for file in stores.files:
                        await file.close()
