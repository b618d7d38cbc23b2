"""The ``openai`` SDK, sync and async, used as its users use it."""

from __future__ import annotations

import json
from typing import Any

import anyio
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from tests.client_tools import WEATHER
from tests.clients.conftest import MODEL, SERVER_PROMPT, Live


class Forecast(BaseModel):
    city: str
    celsius: int


def _async_client(live: Live, session: str) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=live.base_url,
        api_key="x",
        max_retries=0,
        default_headers={"X-Session-Id": session},
    )


async def test_async_plain_streamed_and_two_remembered_turns(live: Live) -> None:
    async with _async_client(live, "async-1") as client:
        first = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "hello"}]
        )
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "again"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" async for c in stream if c.choices]
    assert first.choices[0].message.content == "echo: hello (user messages: 1)"
    assert "".join(pieces) == "echo: again (user messages: 2)"  # the server sent history
    assert len(pieces) > 2


async def test_async_own_system_prompt_structured_output_and_tool_round_trip(live: Live) -> None:
    async with _async_client(live, "async-2") as client:
        await client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "system", "content": "Talk like a pirate."},
                {"role": "user", "content": "hi"},
            ],
        )
        parsed = await client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "forecast"}],
            response_format=Forecast,
        )
        question: Any = [{"role": "user", "content": "What is the weather in Paris?"}]
        paused = await client.chat.completions.create(
            model=MODEL, messages=question, tools=[WEATHER]
        )
        (call,) = paused.choices[0].message.tool_calls or []
        result: Any = {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}
        done = await client.chat.completions.create(model=MODEL, messages=[result], tools=[WEATHER])
    assert live.model.systems()[0] == (
        f"{SERVER_PROMPT}\n\nInstructions from the client for this turn:\nTalk like a pirate."
    )
    assert parsed.choices[0].message.parsed == Forecast(city="", celsius=0)
    assert paused.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert done.choices[0].message.content == "The tool answered: sunny, 21 C"


def _sync_round(base_url: str) -> dict[str, Any]:
    with OpenAI(
        base_url=base_url, api_key="x", max_retries=0, default_headers={"X-Session-Id": "sync"}
    ) as client:
        answers = []
        for text in ("one", "two"):
            reply = client.chat.completions.create(
                model=MODEL,
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": text},
                ],
            )
            answers.append(reply.choices[0].message.content or "")
        with client.chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": "three"}]
        ) as stream:
            answers.append(stream.get_final_completion().choices[0].message.content or "")
        parsed = client.chat.completions.parse(
            model=MODEL,
            messages=[{"role": "user", "content": "forecast"}],
            response_format=Forecast,
        )
        # The stream helper assembles the call from its pieces, as the server relays them.
        with client.chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER]
        ) as stream:
            fragments = [
                e.arguments_delta for e in stream if e.type == "tool_calls.function.arguments.delta"
            ]
            paused = stream.get_final_completion()
        (call,) = paused.choices[0].message.tool_calls or []
        done = client.chat.completions.create(
            model=MODEL,
            messages=[
                {"role": "user", "content": "weather?"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": call.id, "content": "rain"},
            ],
            tools=[WEATHER],
        )
        answers.append(done.choices[0].message.content or "")
        return {
            "answers": answers,
            "parsed": parsed.choices[0].message.parsed,
            "fragments": fragments,
            "call": call,
            "finish": paused.choices[0].finish_reason,
        }


async def test_sync_client_in_a_thread(live: Live) -> None:
    seen = await anyio.to_thread.run_sync(_sync_round, live.base_url)
    assert seen["answers"] == [
        "echo: one (user messages: 1)",
        "echo: two (user messages: 2)",
        "echo: three (user messages: 3)",
        "The tool answered: rain",
    ]
    assert live.model.systems()[0].endswith("for this turn:\nBe brief.")
    assert seen["parsed"] == Forecast(city="", celsius=0)
    assert seen["finish"] == "tool_calls"
    assert seen["call"].function.name == "get_weather"
    assert json.loads(seen["call"].function.arguments) == {"city": "Paris"}
    assert len(seen["fragments"]) > 2
    assert "".join(seen["fragments"]) == seen["call"].function.arguments
