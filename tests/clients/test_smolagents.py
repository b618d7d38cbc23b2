"""smolagents: its OpenAIServerModel called directly (a system prompt, two remembered
turns, a stream, a JSON schema), and a ToolCallingAgent's tool round trip.

An agent of smolagents resends its whole run at every step, its tool calls and their
results as text ("Calling tools: ...", then a user message "Observation: ..."), never
as tool messages: it needs ``api.history = "latest"``, where each step is the latest
user message and the earlier ones are taken from the request.
"""

from __future__ import annotations

import json
from typing import Any

import anyio
from pydantic import BaseModel
from smolagents import LogLevel, OpenAIServerModel, ToolCallingAgent, tool
from smolagents.models import ChatMessage, MessageRole

from tests.clients.conftest import MODEL, Live


class Forecast(BaseModel):
    city: str
    celsius: int


@tool
def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: The city's name.
    """
    return f"sunny in {city}"


def _model(base_url: str, session: str) -> OpenAIServerModel:
    return OpenAIServerModel(
        model_id=MODEL,
        api_base=base_url,
        api_key="x",
        client_kwargs={"default_headers": {"X-Session-Id": session}, "max_retries": 0},
    )


def _said(role: MessageRole, text: str) -> ChatMessage:
    return ChatMessage(role=role, content=[{"type": "text", "text": text}])


def _model_calls(base_url: str) -> dict[str, Any]:
    model = _model(base_url, "smol-1")
    system = _said(MessageRole.SYSTEM, "Be terse.")
    plain = model.generate([system, _said(MessageRole.USER, "hello")])
    pieces = [d.content or "" for d in model.generate_stream([_said(MessageRole.USER, "again")])]
    schema = {"name": "Forecast", "schema": Forecast.model_json_schema()}
    shaped = _model(base_url, "smol-2").generate(
        [_said(MessageRole.USER, "forecast")],
        response_format={"type": "json_schema", "json_schema": schema},
    )
    return {"plain": plain.content, "pieces": pieces, "shaped": shaped.content}


async def test_the_model_plain_streamed_remembered_with_a_system_prompt_and_a_schema(
    live: Live,
) -> None:
    seen = await anyio.to_thread.run_sync(_model_calls, live.base_url)
    assert seen["plain"] == "echo: hello (user messages: 1)"
    # Joined: how many pieces depends on the upstream's reads (one read, one delta).
    assert "".join(seen["pieces"]) == "echo: again (user messages: 2)"
    assert live.model.systems()[0].endswith("for this turn:\nBe terse.")
    assert Forecast.model_validate(json.loads(seen["shaped"])) == Forecast(city="", celsius=0)


def _agent_run(base_url: str) -> object:
    agent = ToolCallingAgent(
        tools=[get_weather],
        model=_model(base_url, "smol-3"),
        max_steps=3,
        verbosity_level=LogLevel.OFF,
    )
    return agent.run("What is the weather in Paris?")


async def test_a_tool_calling_agent_runs_its_tool_and_answers(live_latest: Live) -> None:
    answer = await anyio.to_thread.run_sync(_agent_run, live_latest.base_url)
    assert answer == "The tool answered: sunny in Paris"
    # Step 1 paused on the call; step 2 resent the run with the observation, which
    # closed the pause and went on from the conversation the agent showed.
    first, second = live_latest.model.received
    assert first["messages"][-1]["content"] == "New task:\nWhat is the weather in Paris?"
    assert [m["role"] for m in second["messages"][1:]] == ["user", "assistant", "user"]
    assert second["messages"][-1]["content"] == "Observation:\nsunny in Paris"
    assert "for this turn:\nYou are an expert assistant" in live_latest.model.systems()[0]
