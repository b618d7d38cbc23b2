"""The client's tool calls in a streamed response, through a real socket, as OpenAI
streams them: a call's item opens when the model starts it, its arguments follow in
the pieces the model wrote them in, and a resumed background stream replays the very
same events; the openai SDK's stream helper and the Agents SDK assemble the calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from openai import AsyncOpenAI

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.client_tools import RESPONSES_WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text

MODEL = "MiniMax-M2.7"
PARIS = ("get_weather", json.dumps({"city": "Paris"}))
# The stand-in model writes a call's arguments in two pieces: halves of the text.
PIECES = ['{"city":', ' "Paris"}']


def _config(tmp_path: Path, up: ScriptedUpstream) -> Config:
    providers = {"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up-123456")}
    agents = AgentsConfig(AgentDefaults(model=MODEL))
    return attrs.evolve(Config(), providers=providers, agents=agents, workspace=tmp_path / "ws")


async def test_the_stream_helper_sees_a_call_open_then_its_arguments_in_pieces(
    tmp_path: Path,
) -> None:
    async with (
        ScriptedUpstream() as up,
        running_server(build(_config(tmp_path, up))) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        up.add(Calls((PARIS,), text="Let me look."))
        async with client.responses.stream(
            model=MODEL, input="weather in Paris?", tools=[RESPONSES_WEATHER]
        ) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    opened = [e for e in events if e.type == "response.output_item.added"]
    assert [o.item.type for o in opened] == ["message", "function_call"]
    item = opened[1].item
    assert item.type == "function_call"
    assert (item.name, item.arguments, item.status) == ("get_weather", "", "in_progress")
    deltas = [e for e in events if e.type == "response.function_call_arguments.delta"]
    assert [d.delta for d in deltas] == PIECES
    assert {(d.item_id, d.output_index) for d in deltas} == {(item.id, 1)}
    assert deltas[-1].snapshot == PARIS[1]  # the SDK assembled it as it came
    # The text's item ends before the call's opens; the call ends before the response.
    assert kinds.index("response.output_item.done") < kinds.index("response.output_item.added", 5)
    assert kinds[-3:] == [
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = [o for o in final.output if o.type == "function_call"]
    assert (call.id, call.call_id, call.arguments) == (item.id, item.call_id, PARIS[1])
    assert final.output_text == "Let me look."


async def test_a_resumed_background_stream_replays_the_call_s_pieces(tmp_path: Path) -> None:
    async with (
        ScriptedUpstream() as up,
        running_server(build(_config(tmp_path, up))) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        up.add(Calls((PARIS,)))
        live = await client.responses.create(
            model=MODEL, input="weather?", tools=[RESPONSES_WEATHER], background=True, stream=True
        )
        first: list[dict[str, Any]] = [e.to_dict() async for e in live]
        response_id = first[0]["response"]["id"]
        # Picked up again after the call opened: the rest comes from the stored log.
        opened = next(e for e in first if e["type"] == "response.output_item.added")
        resumed = await client.responses.retrieve(
            response_id, stream=True, starting_after=opened["sequence_number"]
        )
        rest = [e.to_dict() async for e in resumed]
    assert rest == first[opened["sequence_number"] + 1 :]
    assert [e["delta"] for e in rest if e["type"].endswith("arguments.delta")] == PIECES
    assert first[-1]["type"] == "response.completed"


async def test_the_agents_sdk_runs_a_tool_streamed(tmp_path: Path) -> None:
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    async with (
        ScriptedUpstream() as up,
        running_server(build(_config(tmp_path, up))) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        up.add(Calls((PARIS,)), Text("Sunny in Paris."))
        model = OpenAIResponsesModel(model=MODEL, openai_client=client)
        agent = Agent(name="weather", model=model, tools=[get_weather])
        run = Runner.run_streamed(agent, "weather?", run_config=RunConfig(tracing_disabled=True))
        raw = [e.data.type async for e in run.stream_events() if e.type == "raw_response_event"]
    assert run.final_output == "Sunny in Paris."
    assert seen == ["Paris"]
    assert raw.count("response.function_call_arguments.delta") == len(PIECES)
