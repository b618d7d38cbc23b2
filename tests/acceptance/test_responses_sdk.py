"""The Responses API on a real socket, driven by the official openai SDK (async)."""

from __future__ import annotations

import json
from typing import Any

import anyio
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.errors import UpstreamFailed
from nanobot_api.domain.sessions import api_session
from tests.fakes import FailingAgent, GatedAgent, ToolStepAgent


def sdk(server: RunningServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0)


async def test_create_retrieve_and_chain_with_previous_response_id(config: Config) -> None:
    async with running_server(build(config)) as server, sdk(server) as client:
        first = await client.responses.create(model="nanobot-echo", input="hello there")
        assert first.status == "completed"
        assert first.output_text == "echo: hello there"
        assert first.id.startswith("resp_")
        assert first.usage is not None
        assert first.usage.total_tokens > 0
        again = await client.responses.retrieve(first.id)
        assert again.output_text == first.output_text
        second = await client.responses.create(input="more", previous_response_id=first.id)
        assert second.previous_response_id == first.id
        assert second.output_text == 'echo: more (turn 2; earlier: "hello there")'
        # The first is no longer the latest of its conversation.
        with pytest.raises(openai.ConflictError) as info:
            await client.responses.create(input="fork", previous_response_id=first.id)
        assert info.value.status_code == 409
        error: Any = info.value.body
        assert (error["type"], error["code"]) == ("conversation_conflict", 409)
        assert f"its latest response is '{second.id}'" in error["message"]
        items = await client.responses.input_items.list(second.id)
        assert [i.type for i in items.data] == ["message"]
        await client.responses.delete(first.id)
        with pytest.raises(openai.NotFoundError):
            await client.responses.retrieve(first.id)


async def test_the_stream_helper_sees_named_events_in_order(config: Config) -> None:
    async with running_server(build(config)) as server, sdk(server) as client:
        async with client.responses.stream(model="nanobot-echo", input="one two") as stream:
            kinds = []
            numbers = []
            async for event in stream:
                kinds.append(event.type)
                numbers.append(event.sequence_number)
            final = await stream.get_final_response()
        assert numbers == list(range(len(numbers)))
        assert kinds[:2] == ["response.created", "response.in_progress"]
        assert kinds[-1] == "response.completed"
        assert "response.output_text.delta" in kinds
        assert final.output_text == "echo: one two"


async def test_a_background_response_is_resumed_after_a_cut_stream(config: Config) -> None:
    async with running_server(build(config)) as server, sdk(server) as client:
        started = await client.responses.create(input="a b c d", background=True)
        assert started.status in ("queued", "in_progress")
        stream = await client.responses.retrieve(started.id, stream=True)
        seen = []
        async for event in stream:
            seen.append(event)
            if len(seen) == 3:
                break
        await stream.close()
        rest = await client.responses.retrieve(
            started.id, stream=True, starting_after=seen[-1].sequence_number
        )
        later = [event async for event in rest]
        numbers = [e.sequence_number for e in seen + later]
        assert numbers == list(range(len(numbers)))
        assert later[-1].type == "response.completed"
        done = await client.responses.retrieve(started.id)
        assert done.status == "completed"
        assert done.output_text == "echo: a b c d"


async def test_conversations_are_sessions(config: Config) -> None:
    async with running_server(build(config)) as server, sdk(server) as client:
        conversation = await client.conversations.create(metadata={"topic": "t"})
        assert conversation.id.startswith("conv_")
        await client.responses.create(input="from responses", conversation=conversation.id)
        await client.chat.completions.create(
            model="nanobot-echo",
            messages=[{"role": "user", "content": "from chat"}],
            extra_body={"session_id": conversation.id},
        )
        items = await client.conversations.items.list(conversation.id, order="asc")
        texts = [item.content[0].text for item in items.data]  # type: ignore[union-attr]
        assert texts == [
            "from responses",
            "echo: from responses",
            "from chat",
            'echo: from chat (turn 2; earlier: "from responses")',
        ]
        fetched = await client.conversations.retrieve(conversation.id)
        assert fetched.metadata == {"topic": "t"}
        await client.conversations.delete(conversation.id)
        with pytest.raises(openai.NotFoundError):
            await client.conversations.retrieve(conversation.id)


async def test_conversations_are_listed_newest_first_a_page_at_a_time(config: Config) -> None:
    async with running_server(build(config)) as server, sdk(server) as client:
        # Made in the order c, b, a, then c went on: the newest is c, then a, then b
        # (not the order of their names either way).
        for session in ("c", "b", "a", "c"):
            await client.responses.create(input="hi", conversation=session)

        async def page(**query: Any) -> Any:
            return await client.get("/conversations", cast_to=object, options={"params": query})

        first = await page(limit=2)
        assert [c["id"] for c in first["data"]] == ["c", "a"]
        assert first["has_more"] is True
        rest = await page(limit=2, after=first["last_id"])
        assert [c["id"] for c in rest["data"]] == ["b"]
        assert rest["has_more"] is False


async def test_an_unstored_response_is_answered_and_leaves_nothing_behind(config: Config) -> None:
    """``store: false``: the answer comes, the response cannot be read back or continued,
    and a client calling that way every time piles up no listed conversation."""
    async with running_server(build(config)) as server, sdk(server) as client:
        kept = await client.responses.create(input="keep me")
        answers = [await client.responses.create(input=f"call {n}", store=False) for n in (1, 2)]
        assert [a.output_text for a in answers] == ["echo: call 1", "echo: call 2"]
        for answer in answers:
            with pytest.raises(openai.NotFoundError):
                await client.responses.retrieve(answer.id)
            with pytest.raises(openai.NotFoundError):
                await client.responses.create(input="on", previous_response_id=answer.id)
        listed: Any = await client.get("/conversations", cast_to=object)
        assert [c["id"] for c in listed["data"]] == [kept.id]
        with pytest.raises(openai.BadRequestError, match="need store: true"):
            await client.responses.create(input="later", store=False, background=True)


async def test_a_background_response_is_cancelled_and_leaves_no_trace(config: Config) -> None:
    agent = GatedAgent()
    store = InMemorySessionStore()
    async with (
        running_server(build(config, agent=agent, store=store)) as server,
        sdk(server) as client,
    ):
        started = await client.responses.create(input="wait", background=True, conversation="c1")
        await agent.started_event("wait").wait()
        cancelled = await client.responses.cancel(started.id)
        assert cancelled.status == "cancelled"
        assert (await client.responses.retrieve(started.id)).status == "cancelled"
        events = [e async for e in await client.responses.retrieve(started.id, stream=True)]
        assert events[-1].type == "response.failed"
        assert not any(e.type == "response.completed" for e in events)
    assert await store.history(api_session("c1")) == ()


async def test_a_failed_turn_streams_response_failed_never_completed(config: Config) -> None:
    agent = FailingAgent(UpstreamFailed("Upstream model returned 503"), model="nanobot-echo")
    async with running_server(build(config, agent=agent)) as server, sdk(server) as client:
        stream = await client.responses.create(input="x", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds[-1] == "response.failed"
        assert "response.completed" not in kinds
        with pytest.raises(openai.APIStatusError) as info:
            await client.responses.create(input="x")
        assert info.value.status_code == 502


async def test_tool_progress_is_shown_only_to_streams_that_ask(config: Config) -> None:
    async with (
        running_server(build(config, agent=ToolStepAgent())) as server,
        sdk(server) as client,
    ):
        plain = [e.type async for e in await client.responses.create(input="x", stream=True)]
        assert not any(kind.startswith("nanobot.") for kind in plain)
        stream = await client.responses.create(
            input="x",
            stream=True,
            include=["nanobot.tool_events"],  # type: ignore[list-item]
        )
        tool = [e.type async for e in stream if e.type.startswith("nanobot.")]
        assert tool == ["nanobot.tool.started", "nanobot.tool.done"]
        done = await client.responses.create(input="y")
        assert [o.type for o in done.output] == ["message"]  # server tools never show


def _sync_scenario(base_url: str) -> None:
    """Every endpoint once through the blocking client (run in a worker thread)."""
    with OpenAI(base_url=base_url, api_key="dummy", max_retries=0) as client:
        conversation = client.conversations.create(items=[{"role": "user", "content": "hi"}])
        first = client.responses.create(input="one", conversation=conversation.id)
        assert first.output_text == 'echo: one (turn 2; earlier: "hi")'
        with client.responses.stream(
            model="nanobot-echo", input="two", previous_response_id=first.id
        ) as stream:
            final = stream.get_final_response()
        assert final.output_text == 'echo: two (turn 3; earlier: "hi", "one")'
        background = client.responses.create(input="three", background=True)
        events = list(client.responses.retrieve(background.id, stream=True, starting_after=1))
        assert events[0].sequence_number == 2
        assert events[-1].type == "response.completed"
        assert client.responses.cancel(background.id).status == "completed"
        inputs = client.responses.input_items.list(first.id)
        assert [i.type for i in inputs.data] == ["message"]
        items = client.conversations.items.list(conversation.id, limit=2)
        assert items.has_more
        assert [i.id for i in items.data] == ["msg_3_1", "msg_3_0"]
        assert client.conversations.update(conversation.id, metadata={"a": "b"}).metadata == {
            "a": "b"
        }
        client.responses.delete(first.id)
        client.conversations.delete(conversation.id)
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.list(conversation.id)


async def test_the_sync_client_drives_every_endpoint(config: Config) -> None:
    async with running_server(build(config)) as server:
        await anyio.to_thread.run_sync(_sync_scenario, server.base_url)


async def test_text_format_asks_for_the_schema_s_shape(config: Config) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    }
    async with running_server(build(config)) as server, sdk(server) as client:
        answer = await client.responses.create(
            input="where?",
            text={"format": {"type": "json_schema", "name": "place", "schema": schema}},
        )
    assert set(json.loads(answer.output_text)) == {"city"}
