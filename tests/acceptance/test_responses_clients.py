"""The Responses API with what clients send besides a message, against a stand-in model:
instructions, a client tool round trip (function_call out, function_call_output in),
and the Agents SDK running a tool-using agent across turns."""

from __future__ import annotations

import json
from pathlib import Path

import attrs
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from openai import AsyncOpenAI

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.client_tools import RESPONSES_WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text

MODEL = "MiniMax-M2.7"


def _config(tmp_path: Path, up: ScriptedUpstream) -> Config:
    providers = {"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up-123456")}
    agents = AgentsConfig(AgentDefaults(model=MODEL))
    return attrs.evolve(Config(), providers=providers, agents=agents, workspace=tmp_path / "ws")


async def test_a_client_tool_round_trip_through_responses(tmp_path: Path) -> None:
    call = ("get_weather", json.dumps({"city": "Paris"}))
    async with (
        ScriptedUpstream() as up,
        running_server(build(_config(tmp_path, up))) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        up.add(Calls((call,)), Text("Sunny in Paris."))
        paused = await client.responses.create(
            model=MODEL,
            input="weather in Paris?",
            instructions="Be brief.",
            tools=[RESPONSES_WEATHER],
        )
        (item,) = [o for o in paused.output if o.type == "function_call"]
        assert (item.name, json.loads(item.arguments)) == ("get_weather", {"city": "Paris"})
        assert up.received[0].messages[0]["role"] == "system"
        assert "Be brief." in up.received[0].messages[0]["content"]
        done = await client.responses.create(
            model=MODEL,
            previous_response_id=paused.id,
            input=[{"type": "function_call_output", "call_id": item.call_id, "output": "sunny"}],
            tools=[RESPONSES_WEATHER],
        )
        assert done.output_text == "Sunny in Paris."
        assert up.received[1].messages[-1]["content"] == "sunny"


async def test_the_agents_sdk_runs_a_tool_using_agent(tmp_path: Path) -> None:
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    call = ("get_weather", json.dumps({"city": "Oslo"}))
    async with (
        ScriptedUpstream() as up,
        running_server(build(_config(tmp_path, up))) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        up.add(Calls((call,)), Text("It is sunny in Oslo."), Text("You asked about Oslo."))
        model = OpenAIResponsesModel(model=MODEL, openai_client=client)
        agent = Agent(name="weather", instructions="Use tools.", model=model, tools=[get_weather])
        settings = RunConfig(tracing_disabled=True)
        first = await Runner.run(agent, "weather in Oslo?", run_config=settings)
        assert first.final_output == "It is sunny in Oslo."
        assert seen == ["Oslo"]
        second = await Runner.run(
            agent,
            "what did I ask?",
            previous_response_id=first.last_response_id,
            run_config=settings,
        )
        assert second.final_output == "You asked about Oslo."
        # The second turn's model call saw the whole conversation, tool step included.
        contents = [str(m.get("content")) for m in up.received[-1].messages]
        assert any("weather in Oslo?" in c for c in contents)
