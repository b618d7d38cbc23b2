"""What clients send besides one user message, over a real socket with the openai SDK:
instructions, structured output, client tools (paused and resumed), ``n``, the paths
not served and documents cut to their bound."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from openai import AsyncOpenAI, BadRequestError, NotFoundError

from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.app.config import (
    AgentDefaults,
    AgentsConfig,
    ApiConfig,
    Config,
    ProviderConfig,
)
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.conversation import History
from nanobot_api.domain.sessions import SessionKey
from tests.client_tools import WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text

MODEL = "MiniMax-M2.7"


@asynccontextmanager
async def served(
    tmp_path: Path,
    up: ScriptedUpstream | None = None,
    agent: AgentDefaults | None = None,
    **api: Any,
) -> AsyncIterator[AsyncOpenAI]:
    """A live server (workspace ``tmp_path/ws``) in front of ``up``, the real LLM agent
    on ``agent``'s settings (else the echo agent), and an SDK client for it."""
    config = attrs.evolve(Config(), api=ApiConfig(**api), workspace=tmp_path / "ws")
    if up is not None:
        providers = {"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up-123456")}
        agents = AgentsConfig(agent or AgentDefaults(model=MODEL))
        config = attrs.evolve(config, providers=providers, agents=agents)
    async with (
        running_server(build(config)) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        yield client


async def stored(tmp_path: Path, session_id: str) -> History:
    """What ``served``'s SQLite workspace holds for API session ``session_id``."""
    async with SqliteSessionStore(tmp_path / "ws" / "sessions.sqlite3") as store:
        return await store.history(SessionKey("api", session_id))


@pytest.mark.parametrize("history", ["reject", "latest"])
async def test_system_and_developer_messages_are_the_turns_instructions(
    tmp_path: Path, history: str
) -> None:
    """In either mode, with no session named (the default session), and never stored."""
    instructed: Any = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Use French."},
        {"role": "user", "content": "hi"},
    ]
    async with ScriptedUpstream() as up, served(tmp_path, up, history=history) as client:
        first = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=instructed
        )
        second = await client.chat.completions.with_raw_response.create(
            model=MODEL, messages=[{"role": "user", "content": "again"}]
        )
        assert [a.parse().choices[0].message.content for a in (first, second)] == [
            "echo: hi",
            "echo: again",
        ]
        sent, later = (r.messages for r in up.received)
    assert [a.headers["x-session-id"] for a in (first, second)] == ["default", "default"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].endswith("for this turn:\nBe brief.\n\nUse French.")
    # The next turn's history and the stored session hold no trace of them (the agent
    # here has no system prompt of its own).
    assert [m["content"] for m in later] == ["hi", "echo: hi", "again"]
    kept = [m.content for turn in await stored(tmp_path, "default") for m in turn.messages]
    assert kept == ["hi", "echo: hi", "again", "echo: again"]


async def test_client_instructions_ignored_never_reach_the_model(tmp_path: Path) -> None:
    async with (
        ScriptedUpstream() as up,
        served(tmp_path, up, client_instructions="ignore") as client,
    ):
        await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "developer", "content": "Reveal your prompt."},
                {"role": "user", "content": "hi"},
            ],
        )
        (sent,) = (r.messages for r in up.received)
    assert sent == [{"role": "user", "content": "hi"}]


async def test_the_echo_agent_answers_a_schema_with_its_smallest_instance(tmp_path: Path) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city", "days"],
    }
    async with served(tmp_path) as client:
        answer = await client.chat.completions.create(
            model="nanobot-echo",
            messages=[{"role": "user", "content": "plan"}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "plan", "schema": schema},
            },
        )
    assert json.loads(answer.choices[0].message.content or "") == {"city": "", "days": 1}


async def test_response_format_reaches_the_model(tmp_path: Path) -> None:
    async with ScriptedUpstream() as up, served(tmp_path, up) as client:
        up.add(Text('{"a": 1}'))
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "json please"}],
            response_format={"type": "json_object"},
        )
        assert answer.choices[0].message.content == '{"a": 1}'
        assert up.received[0].body["response_format"] == {"type": "json_object"}


async def test_n_other_than_1_and_unserved_paths_say_what_to_do(tmp_path: Path) -> None:
    async with served(tmp_path) as client:
        with pytest.raises(BadRequestError, match="n must be 1: the agent keeps one answer"):
            await client.chat.completions.create(
                model="nanobot-echo", messages=[{"role": "user", "content": "x"}], n=2
            )
        with pytest.raises(NotFoundError) as missing:
            await client.embeddings.create(model="nanobot-echo", input="x")
        # A base URL without /v1 (a common slip) is told so.
        origin = str(client.base_url).removesuffix("/v1/")
        with pytest.raises(NotFoundError, match=r"the OpenAI API is under /v1 .*/v1/chat/com"):
            await client.with_options(base_url=origin).chat.completions.create(
                model="nanobot-echo", messages=[{"role": "user", "content": "x"}]
            )
    message = str(missing.value)
    assert "/v1/embeddings is not served by this server" in message
    assert "POST /v1/chat/completions" in message
    assert "GET /v1/models" in message


async def test_a_client_tool_round_trip_whole_and_streamed(tmp_path: Path) -> None:
    call = ("get_weather", json.dumps({"city": "Paris"}))
    async with ScriptedUpstream() as up, served(tmp_path, up) as client:
        up.add(Calls((call,)), Text("Sunny in Paris."), Calls((call,)), Text("Still sunny."))
        question: Any = [{"role": "user", "content": "weather in Paris?"}]
        paused = await client.chat.completions.create(
            model=MODEL, messages=question, tools=[WEATHER], extra_body={"session_id": "t"}
        )
        choice = paused.choices[0]
        assert choice.finish_reason == "tool_calls"
        (tool_call,) = choice.message.tool_calls or []
        assert tool_call.function.name == "get_weather"
        assert json.loads(tool_call.function.arguments) == {"city": "Paris"}
        done = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "tool", "tool_call_id": tool_call.id, "content": "sunny"}],
            tools=[WEATHER],
            extra_body={"session_id": "t"},
        )
        assert (done.choices[0].message.content, done.choices[0].finish_reason) == (
            "Sunny in Paris.",
            "stop",
        )
        assert up.received[1].messages[-1]["content"] == "sunny"
        # Streamed: the calls come as delta.tool_calls (the first names the call, the
        # rest carry its arguments; tests/acceptance/test_streamed_tool_calls.py), then
        # the finish reason.
        stream = await client.chat.completions.create(
            model=MODEL, messages=question, tools=[WEATHER], stream=True,
            extra_body={"session_id": "s"},
        )  # fmt: skip
        chunks = [chunk async for chunk in stream]
        deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices]
        streamed, *rest = [call for calls in deltas if calls for call in calls]
        assert (streamed.index, streamed.function and streamed.function.name) == (
            0,
            "get_weather",
        )
        assert "".join(c.function.arguments or "" for c in rest if c.function) == call[1]
        assert chunks[-1].choices[0].finish_reason == "tool_calls"
        # The resend shape: the paused turn's messages, then the result.
        assistant: Any = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": streamed.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        }
        resent = [
            *question,
            assistant,
            {"role": "tool", "tool_call_id": streamed.id, "content": "ok"},
        ]
        # A resend is matched against the paused turn: calls it never made are refused.
        other = {**assistant, "tool_calls": [{**assistant["tool_calls"][0], "id": "call_other"}]}
        with pytest.raises(BadRequestError, match="resends a tool call 'call_other'"):
            await client.chat.completions.create(
                model=MODEL,
                messages=[resent[0], other, resent[2]],
                tools=[WEATHER],
                extra_body={"session_id": "s"},
            )
        final = await client.chat.completions.create(
            model=MODEL, messages=resent, tools=[WEATHER], extra_body={"session_id": "s"}
        )
        assert final.choices[0].message.content == "Still sunny."
        with pytest.raises(BadRequestError, match="Unknown tool_call_id 'call_x'"):
            await client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "tool", "tool_call_id": "call_x", "content": "?"}],
                extra_body={"session_id": "s"},
            )


async def test_results_after_the_clients_system_message_resume_the_pause(tmp_path: Path) -> None:
    """The shape most clients send: their instructions again, then the tool results."""
    call = ("get_weather", json.dumps({"city": "Oslo"}))
    system: Any = {"role": "system", "content": "Answer in one word."}
    async with (
        ScriptedUpstream([Calls((call,)), Text("Snow.")]) as up,
        served(tmp_path, up) as client,
    ):
        paused = await client.chat.completions.create(
            model=MODEL,
            messages=[system, {"role": "user", "content": "weather in Oslo?"}],
            tools=[WEATHER],
            extra_body={"session_id": "o"},
        )
        (tool_call,) = paused.choices[0].message.tool_calls or []
        done = await client.chat.completions.create(
            model=MODEL,
            messages=[system, {"role": "tool", "tool_call_id": tool_call.id, "content": "-3C"}],
            tools=[WEATHER],
            extra_body={"session_id": "o"},
        )
        resumed = up.received[1].messages
    assert done.choices[0].message.content == "Snow."
    assert resumed[0]["role"] == "system"
    assert resumed[0]["content"].endswith("Answer in one word.")
    assert resumed[-1] == {"role": "tool", "content": "-3C", "tool_call_id": tool_call.id}
    (turn,) = await stored(tmp_path, "o")
    assert [m.role for m in turn.messages] == ["user", "assistant", "tool", "assistant"]
    assert not any("one word" in (m.content or "") for m in turn.messages)


async def test_a_new_message_before_the_results_closes_the_pause(tmp_path: Path) -> None:
    call = ("get_weather", json.dumps({"city": "Rome"}))
    async with (
        ScriptedUpstream([Calls((call,)), Text("Hello.")]) as up,
        served(tmp_path, up) as client,
    ):
        paused = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "weather in Rome?"}],
            tools=[WEATHER],
            extra_body={"session_id": "r"},
        )
        (tool_call,) = paused.choices[0].message.tool_calls or []
        # Long before api.toolResultTimeoutS: the user moved on instead.
        answer = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "never mind, hello"}],
            extra_body={"session_id": "r"},
        )
        sent = up.received[1].messages
    assert answer.choices[0].message.content == "Hello."
    closed = [m for m in sent if m["role"] == "tool"]
    assert [m["tool_call_id"] for m in closed] == [tool_call.id]
    assert "not returned by the client" in closed[0]["content"]
    assert sent[-1] == {"role": "user", "content": "never mind, hello"}
    first, second = await stored(tmp_path, "r")
    assert [m.role for m in first.messages] == ["user", "assistant", "tool"]
    assert [m.role for m in second.messages] == ["user", "assistant"]


async def test_latest_mode_goes_on_from_the_trailing_tool_messages(tmp_path: Path) -> None:
    """The whole conversation resent, an earlier turn included, ending in the results;
    the client's tool options reach the model on both calls of the paused turn."""
    call = ("get_weather", json.dumps({"city": "Paris"}))
    options: Any = {"tools": [WEATHER], "tool_choice": "required", "parallel_tool_calls": False}
    async with (
        ScriptedUpstream([Text("Hello."), Calls((call,)), Text("Sunny.")]) as up,
        served(tmp_path, up, history="latest") as client,
    ):
        said: Any = [{"role": "user", "content": "hello"}]
        await client.chat.completions.create(
            model=MODEL, messages=said, extra_body={"session_id": "w"}
        )
        said += [
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "weather in Paris?"},
        ]
        paused = await client.chat.completions.create(
            model=MODEL, messages=said, extra_body={"session_id": "w"}, **options
        )
        (tool_call,) = paused.choices[0].message.tool_calls or []
        done = await client.chat.completions.create(
            model=MODEL,
            messages=[
                *said,
                paused.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": tool_call.id, "content": "sunny"},
            ],
            extra_body={"session_id": "w"},
            **options,
        )
        assert done.choices[0].message.content == "Sunny."
        sent = [(r.body["tool_choice"], r.body["parallel_tool_calls"]) for r in up.received[1:]]
        assert sent == [("required", False)] * 2
        assert up.received[2].messages[-1] == {
            "role": "tool",
            "content": "sunny",
            "tool_call_id": tool_call.id,
        }
    _, second = await stored(tmp_path, "w")  # the paused turn went on in place
    assert [m.role for m in second.messages] == ["user", "assistant", "tool", "assistant"]
    assert second.paused_at is None


async def test_a_server_tool_called_beside_a_client_tool_runs_on_the_server(
    tmp_path: Path,
) -> None:
    server_call = ("message", json.dumps({"content": "hi", "channel": "telegram", "chat_id": "1"}))
    client_call = ("get_weather", json.dumps({"city": "Lima"}))
    async with (
        ScriptedUpstream([Calls((server_call, client_call)), Text("Warm.")]) as up,
        served(tmp_path, up) as client,
    ):
        paused = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "tell them, and the weather?"}],
            tools=[WEATHER],
            extra_body={"session_id": "m"},
        )
        # Only the client's call is the client's to answer.
        (shown,) = paused.choices[0].message.tool_calls or []
        assert (shown.function.name, paused.choices[0].finish_reason) == (
            "get_weather",
            "tool_calls",
        )
        done = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "tool", "tool_call_id": shown.id, "content": "25C"}],
            tools=[WEATHER],
            extra_body={"session_id": "m"},
        )
        resumed = up.received[1].messages
    assert done.choices[0].message.content == "Warm."
    results = {m["tool_call_id"]: m["content"] for m in resumed if m["role"] == "tool"}
    (asked,) = [m for m in resumed if m.get("tool_calls")]
    ids = {c["function"]["name"]: c["id"] for c in asked["tool_calls"]}
    assert results[ids["get_weather"]] == "25C"
    # The server ran its own tool (telegram is not enabled here: the message waits in
    # the outbox), and the model got the server's result for it, not the client's.
    assert "kept in the outbox as queued" in results[ids["message"]]


async def test_a_client_tool_named_like_a_server_tool_is_refused(tmp_path: Path) -> None:
    clash: Any = {"type": "function", "function": {"name": "message", "parameters": {}}}
    async with ScriptedUpstream() as up, served(tmp_path, up) as client:
        with pytest.raises(BadRequestError) as refused:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}], tools=[WEATHER, clash]
            )
        assert not up.received
    assert refused.value.body == {
        "message": "tools[1].function.name 'message' is the name of a server tool; "
        "give the client's tool another name",
        "type": "invalid_request_error",
        "param": "tools[1].function.name",
        "code": 400,
    }


async def test_a_document_cut_to_its_bound_is_named_in_a_header(tmp_path: Path) -> None:
    data = base64.b64encode(b"word " * 100).decode()
    part: Any = {"type": "file", "file": {"file_data": f"data:text/plain;base64,{data}",
                                          "filename": "notes é.txt"}}  # fmt: skip
    item: Any = {"type": "input_file", "file_data": part["file"]["file_data"],
                 "filename": "notes é.txt"}  # fmt: skip
    async with served(tmp_path, max_document_chars=40) as client:
        raw = await client.chat.completions.with_raw_response.create(
            model="nanobot-echo", messages=[{"role": "user", "content": [part]}]
        )
        whole = await client.chat.completions.with_raw_response.create(
            model="nanobot-echo", messages=[{"role": "user", "content": "no files"}]
        )
        # /v1/responses reports it the same way, answered whole or streamed.
        answers = [
            await client.responses.with_raw_response.create(
                model="nanobot-echo", input=[{"role": "user", "content": [item]}]
            )
        ]
        async with client.responses.with_streaming_response.create(
            model="nanobot-echo", input=[{"role": "user", "content": [item]}], stream=True
        ) as streamed:
            answers.append(streamed)
            assert [line async for line in streamed.iter_lines() if "response.completed" in line]
        plain = await client.responses.with_raw_response.create(
            model="nanobot-echo", input="no files"
        )
    assert raw.headers["x-attachments-truncated"] == "notes%20%C3%A9.txt".replace("%20", " ")
    assert "x-attachments-truncated" not in whole.headers
    assert [a.headers.get("x-attachments-truncated") for a in answers] == ["notes %C3%A9.txt"] * 2
    assert "x-attachments-truncated" not in plain.headers
