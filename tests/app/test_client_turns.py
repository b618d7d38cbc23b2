"""What a client asks of a turn (its instructions, the answer's shape, its own tools)
inside the chat use case, with the LLM agent talking to the scripted upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.llm_agent import LlmAgent
from nanobot_api.domain.client import TurnOptions, response_format_of
from nanobot_api.domain.conversation import Message
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.models import ToolSpec
from nanobot_api.domain.pauses import NOT_RETURNED
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.turns import ChatRequest, TurnResult
from tests.app.test_llm_agent import AddTool, Collected
from tests.fakes import TextOnlyAttachments
from tests.upstream import Calls, ScriptedUpstream, Text, chat_model

KEY = SessionKey("api", "c")
WEATHER = ToolSpec(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


class Rig:
    def __init__(self, service: ChatService, store: InMemorySessionStore, up: ScriptedUpstream):
        self.service = service
        self.store = store
        self.up = up
        self.now = 1000.0

    async def ask(self, text: str = "", **fields: object) -> TurnResult:
        prepared = await self.service.prepare(ChatRequest(KEY, text, **fields))  # type: ignore[arg-type]
        return await self.service.run(prepared, Collected())

    async def last(self) -> tuple[Message, ...]:
        _, record = await self.store.last_turn(KEY)
        assert record is not None
        return record.messages


@asynccontextmanager
async def rig(**service: object) -> AsyncIterator[Rig]:
    async with ScriptedUpstream() as up, chat_model(up) as model:
        store = InMemorySessionStore()
        agent = LlmAgent(model, "m", tools=[AddTool()], system_prompt="You are terse.")
        holder: list[Rig] = []
        chat = ChatService(
            agent,
            store,
            TextOnlyAttachments(),
            timeout_s=10,
            clock=lambda: holder[0].now,
            **service,  # type: ignore[arg-type]
        )
        holder.append(Rig(chat, store, up))
        yield holder[0]


def weather_call(city: str = "Paris") -> tuple[str, str]:
    return ("get_weather", json.dumps({"city": city}))


async def test_client_instructions_follow_the_system_prompt_and_are_not_stored() -> None:
    async with rig() as r:
        await r.ask("hi", options=TurnOptions(instructions="Answer in French."))
        system = r.up.received[0].messages[0]
        assert system["role"] == "system"
        assert system["content"] == (
            "You are terse.\n\nInstructions from the client for this turn:\nAnswer in French."
        )
        assert [m.role for m in await r.last()] == ["user", "assistant"]
        await r.ask("again")
        assert r.up.received[1].messages[0]["content"] == "You are terse."


async def test_client_instructions_can_be_ignored() -> None:
    async with rig(client_instructions="ignore") as r:
        await r.ask("hi", options=TurnOptions(instructions="Answer in French."))
        assert r.up.received[0].messages[0]["content"] == "You are terse."


async def test_response_format_and_tool_options_reach_the_model() -> None:
    shape = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}}}
    async with rig() as r:
        r.up.add(Text('{"ok": true}'))
        options = TurnOptions(
            response_format=response_format_of(shape),
            tools=(WEATHER,),
            tool_choice="auto",
            parallel_tool_calls=False,
        )
        result = await r.ask("weather?", options=options)
        body = r.up.received[0].body
    assert result.text == '{"ok": true}'
    assert body["response_format"] == shape
    assert [t["function"]["name"] for t in body["tools"]] == ["add", "get_weather"]
    assert (body["tool_choice"], body["parallel_tool_calls"]) == ("auto", False)


async def test_a_client_tool_call_pauses_the_turn_and_its_results_resume_it() -> None:
    async with rig() as r:
        r.up.add(Calls((weather_call(), ("add", '{"a": 1, "b": 2}'))), Text("Sunny, and 3."))
        paused = await r.ask("weather and sum", options=TurnOptions(tools=(WEATHER,)))
        assert paused.finish_reason == "tool_calls"
        (call,) = paused.tool_calls
        assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
        stored = await r.last()
        assert [m.role for m in stored] == ["user", "assistant", "tool"]  # the server's ran
        assert r.up.received[-1].messages[-1]["role"] == "user"  # no call after the pause
        done = await r.ask(
            tool_results=(Message.tool_result(call.id, "sunny"),),
            continues=True,
            options=TurnOptions(tools=(WEATHER,)),
        )
        assert (done.text, done.finish_reason) == ("Sunny, and 3.", "stop")
        sent = r.up.received[-1].messages
        assert [m["role"] for m in sent] == ["system", "user", "assistant", "tool", "tool"]
        assert sent[-1] == {"role": "tool", "content": "sunny", "tool_call_id": call.id}
        whole = await r.last()
        assert [m.role for m in whole] == ["user", "assistant", "tool", "tool", "assistant"]
        count, _ = await r.store.last_turn(KEY)
        assert count == 1  # one turn, paused and then finished


async def test_a_result_for_an_unknown_call_is_refused_naming_it() -> None:
    async with rig() as r:
        r.up.add(Calls((weather_call(),)))
        paused = await r.ask("weather", options=TurnOptions(tools=(WEATHER,)))
        with pytest.raises(InvalidRequest, match="Unknown tool_call_id 'call_nope'") as refused:
            await r.ask(tool_results=(Message.tool_result("call_nope", "x"),), continues=True)
        assert paused.tool_calls[0].id in refused.value.message


async def test_a_new_user_message_closes_the_pause() -> None:
    async with rig() as r:
        r.up.add(Calls((weather_call(),)), Text("Something else."))
        await r.ask("weather", options=TurnOptions(tools=(WEATHER,)))
        result = await r.ask("never mind")
        assert result.text == "Something else."
        _, first = await r.store.last_turn(KEY)
        history = await r.store.history(KEY)
        assert [m.content for m in history[0].messages if m.role == "tool"] == [NOT_RETURNED]
        assert history[0].paused_at is None
        assert first is not None
        assert first.paused_at is None
        assert [m["role"] for m in r.up.received[-1].messages][-3:] == ["assistant", "tool", "user"]


async def test_a_pause_nobody_answers_expires() -> None:
    async with rig(tool_result_timeout_s=60) as r:
        r.up.add(Calls((weather_call(),)))
        paused = await r.ask("weather", options=TurnOptions(tools=(WEATHER,)))
        r.now += 61
        with pytest.raises(InvalidRequest, match="has expired"):
            await r.ask(
                tool_results=(Message.tool_result(paused.tool_calls[0].id, "late"),),
                continues=True,
            )


async def test_a_client_tool_named_like_a_server_tool_is_refused() -> None:
    async with rig() as r:
        with pytest.raises(InvalidRequest, match="'add' is the name of a server tool") as refused:
            await r.ask("x", options=TurnOptions(tools=(ToolSpec("add", ""),)))
        assert refused.value.param == "tools[0].function.name"
