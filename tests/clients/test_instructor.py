"""instructor: a pydantic model as the answer, by a forced tool (its default mode) or
by a JSON schema, sync and async, plain and streamed (partial objects)."""

from __future__ import annotations

from typing import Any

import anyio
import instructor
from openai import AsyncOpenAI, OpenAI
from pydantic import BaseModel

from tests.client_tools import WEATHER
from tests.clients.conftest import MODEL, Live


class Forecast(BaseModel):
    city: str
    celsius: int


async def test_tools_mode_two_turns_system_prompt_and_streamed_partials(live: Live) -> None:
    raw = AsyncOpenAI(
        base_url=live.base_url, api_key="x", max_retries=0, default_headers={"X-Session-Id": "in-1"}
    )
    client = instructor.from_openai(raw)
    messages: list = [  # type: ignore[type-arg]
        {"role": "system", "content": "You extract forecasts."},
        {"role": "user", "content": "Paris will be warm"},
    ]
    first = await client.chat.completions.create(
        model=MODEL, response_model=Forecast, messages=messages, max_retries=0
    )
    second = await client.chat.completions.create(
        model=MODEL, response_model=Forecast, messages=messages, max_retries=0
    )
    partials = [
        p
        async for p in client.chat.completions.create_partial(
            model=MODEL, response_model=Forecast, messages=messages, max_retries=0
        )
    ]
    plain = await client.chat.completions.create(
        model=MODEL, response_model=None, messages=[{"role": "user", "content": "hi"}]
    )
    await raw.close()
    # instructor hands back its own subclass of the model: compare the fields.
    assert first.model_dump() == second.model_dump() == {"city": "Paris", "celsius": 0}
    assert partials[-1].city == "Paris"
    # Each forced call paused its turn; the next request closed it and went on with
    # the session's history (the client sent one user message each time).
    users = [sum(m["role"] == "user" for m in body["messages"]) for body in live.model.received]
    assert users == [1, 2, 3, 4]
    assert live.model.systems()[0].endswith("for this turn:\nYou extract forecasts.")
    assert plain.choices[0].message.content == "echo: hi (user messages: 4)"


def _json_schema_mode(base_url: str) -> Forecast:
    with OpenAI(base_url=base_url, api_key="x", max_retries=0) as raw:
        client = instructor.from_openai(raw, mode=instructor.Mode.JSON_SCHEMA)
        return client.chat.completions.create(
            model=MODEL,
            response_model=Forecast,
            messages=[{"role": "user", "content": "forecast"}],
            extra_body={"session_id": "in-2"},
            max_retries=0,
        )


async def test_json_schema_mode_sync(live: Live) -> None:
    forecast = await anyio.to_thread.run_sync(_json_schema_mode, live.base_url)
    assert forecast.model_dump() == {"city": "", "celsius": 0}


async def test_a_client_tool_round_trip_answered_as_a_model(live: Live) -> None:
    """The tools pass through (``response_model=None``); the results go back resent
    after the paused turn, and the turn goes on to a structured answer."""
    raw = AsyncOpenAI(
        base_url=live.base_url, api_key="x", max_retries=0, default_headers={"X-Session-Id": "in-3"}
    )
    client = instructor.from_openai(raw)
    question: Any = {"role": "user", "content": "What is the weather in Paris?"}
    async with raw:
        paused = await client.chat.completions.create(
            model=MODEL, response_model=None, messages=[question], tools=[WEATHER]
        )
        (call,) = paused.choices[0].message.tool_calls or []
        asked = {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]}
        result = {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}
        forecast = await client.chat.completions.create(
            model=MODEL, response_model=Forecast, messages=[question, asked, result], max_retries=0
        )
    assert paused.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    # The model was sent the paused turn with the client's result, then answered.
    sent = live.model.received[-1]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["user", "assistant", "tool"]
    assert sent[-1]["content"] == "sunny, 21 C"
    assert forecast.model_dump() == {"city": "Paris", "celsius": 0}
