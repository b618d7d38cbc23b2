"""The OpenAI Agents SDK on Chat Completions with a custom base URL: its
``instructions``, ``output_type``, function tools and streamed runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from agents import Agent, OpenAIChatCompletionsModel, RunConfig, Runner, function_tool
from openai import AsyncOpenAI
from pydantic import BaseModel

from tests.clients.conftest import MODEL, Live

NO_TRACING = RunConfig(tracing_disabled=True)


class Forecast(BaseModel):
    city: str
    celsius: int


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


@pytest.fixture(name="models")
async def _models(live: Live) -> AsyncIterator[Callable[[str], OpenAIChatCompletionsModel]]:
    """Models on clients that name their session; the clients are closed at the end."""
    clients: list[AsyncOpenAI] = []

    def model(session: str) -> OpenAIChatCompletionsModel:
        client = AsyncOpenAI(
            base_url=live.base_url,
            api_key="x",
            max_retries=0,
            default_headers={"X-Session-Id": session},
        )
        clients.append(client)
        return OpenAIChatCompletionsModel(model=MODEL, openai_client=client)

    yield model
    for client in clients:
        await client.close()


async def test_instructions_two_remembered_turns_and_a_streamed_run(
    live: Live, models: Callable[[str], OpenAIChatCompletionsModel]
) -> None:
    agent = Agent(name="pirate", instructions="Talk like a pirate.", model=models("ag-1"))
    first = await Runner.run(agent, "hello", run_config=NO_TRACING)
    second = await Runner.run(agent, "again", run_config=NO_TRACING)
    streamed = Runner.run_streamed(agent, "third", run_config=NO_TRACING)
    events = [event async for event in streamed.stream_events()]
    assert first.final_output == "echo: hello (user messages: 1)"
    assert second.final_output == "echo: again (user messages: 2)"
    assert streamed.final_output == "echo: third (user messages: 3)"
    assert any(e.type == "raw_response_event" for e in events)
    assert live.model.systems()[0].endswith("for this turn:\nTalk like a pirate.")


async def test_output_type_and_a_function_tool_round_trip(
    models: Callable[[str], OpenAIChatCompletionsModel],
) -> None:
    typed = Agent(name="f", instructions="Forecast.", model=models("ag-2"), output_type=Forecast)
    forecast = await Runner.run(typed, "forecast please", run_config=NO_TRACING)
    tools = Agent(name="w", instructions="Use tools.", model=models("ag-3"), tools=[get_weather])
    answer = await Runner.run(tools, "What is the weather in Paris?", run_config=NO_TRACING)
    assert forecast.final_output == Forecast(city="", celsius=0)
    assert answer.final_output == "The tool answered: sunny in Paris"
