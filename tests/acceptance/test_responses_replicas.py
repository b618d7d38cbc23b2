"""Two servers on one store: a background response started on one is followed, resumed
and cancelled from the other, which reads its steps from the store (not from memory)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import attrs
import httpx
import pytest
from agents import Agent, OpenAIResponsesModel, RunConfig, Runner, function_tool
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from tests.acceptance.replicas import RoundRobinProxy
from tests.fakes import GatedAgent
from tests.upstream import Calls, ScriptedUpstream, Text


def sdk(server: RunningServer) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0)


@pytest.fixture(name="shared", params=["sqlite", "postgres"])
def _shared(request: pytest.FixtureRequest, config: Config) -> Config:
    """Both replicas' configuration: one workspace's files, or one PostgreSQL database
    (each replica then keeps its own workspace: nothing is shared through it)."""
    if request.param == "sqlite":
        return config
    url = request.getfixturevalue("postgres_url")
    return attrs.evolve(config, storage=attrs.evolve(config.storage, url=url))


async def test_a_background_response_is_resumed_on_another_replica(
    shared: Config, tmp_path: Path
) -> None:
    config = shared
    other = _elsewhere(shared, tmp_path)
    agent = GatedAgent(model="nanobot-echo")
    async with (
        running_server(build(config, agent=agent)) as one,
        running_server(build(other)) as two,
        sdk(one) as first,
        sdk(two) as second,
    ):
        started = await first.responses.create(input="slow", background=True)
        await agent.started_event("slow").wait()
        # Seen from the other replica while it runs there.
        assert (await second.responses.retrieve(started.id)).status == "in_progress"
        stream = await second.responses.retrieve(started.id, stream=True)
        head = []
        async for event in stream:
            head.append(event)
            if event.type == "response.in_progress":
                break
        await stream.close()
        agent.gate("slow").set()
        rest = await second.responses.retrieve(
            started.id, stream=True, starting_after=head[-1].sequence_number
        )
        tail = [event async for event in rest]
        numbers = [e.sequence_number for e in head + tail]
        assert numbers == list(range(len(numbers)))
        assert tail[-1].type == "response.completed"
        assert (await second.responses.retrieve(started.id)).output_text == "done slow"


async def test_a_cancel_on_another_replica_stops_the_turn(shared: Config, tmp_path: Path) -> None:
    config = shared
    other = _elsewhere(shared, tmp_path)
    agent = GatedAgent(model="nanobot-echo")
    async with (
        running_server(build(config, agent=agent)) as one,
        running_server(build(other)) as two,
        sdk(one) as first,
        sdk(two) as second,
    ):
        started = await first.responses.create(input="stuck", background=True)
        await agent.started_event("stuck").wait()
        cancelled = await second.responses.cancel(started.id)
        assert cancelled.status == "cancelled"
        with anyio.fail_after(5):
            await agent.ended_event("stuck").wait()
        events = [e async for e in await second.responses.retrieve(started.id, stream=True)]
        assert events[-1].type == "response.failed"
        assert events[-1].response.status == "cancelled"


async def test_the_agents_sdk_tool_loop_runs_across_two_replicas(
    shared: Config, tmp_path: Path
) -> None:
    """Its tool loop resends the whole conversation, naming none; behind a round-robin
    proxy the resend lands on the other replica, which finds the paused turn in the
    store."""

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"sunny in {city}"

    async with ScriptedUpstream() as up:
        providers = {"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up-123456")}
        config = attrs.evolve(
            shared, providers=providers, agents=AgentsConfig(AgentDefaults(model="m1"))
        )
        up.add(Calls((("get_weather", json.dumps({"city": "Oslo"})),)), Text("Sunny."))
        # A connection per request, so the proxy alternates replicas.
        fresh = DefaultAsyncHttpxClient(limits=httpx.Limits(max_keepalive_connections=0))
        async with (
            running_server(build(config)) as one,
            running_server(build(_elsewhere(config, tmp_path))) as two,
            RoundRobinProxy([one.port, two.port]) as proxy,
            AsyncOpenAI(base_url=f"{proxy.origin}/v1", api_key="x", http_client=fresh) as client,
        ):
            model = OpenAIResponsesModel(model="m1", openai_client=client)
            agent = Agent(name="weather", model=model, tools=[get_weather])
            result = await Runner.run(
                agent, "weather?", run_config=RunConfig(tracing_disabled=True)
            )
            assert result.final_output == "Sunny."
            assert sorted(proxy.connections.values()) == [1, 1]  # one request on each
            assert up.received[-1].messages[-1]["content"] == "sunny in Oslo"
            # One conversation: the paused turn was resumed, not a new one started.
            conversation = result.raw_responses[0].response_id
            assert conversation is not None
            items = await client.conversations.items.list(conversation, order="asc")
            assert [i.role for i in items.data if i.type == "message"] == ["user", "assistant"]


def _elsewhere(shared: Config, tmp_path: Path) -> Config:
    """The second replica: on PostgreSQL, in a workspace of its own."""
    if not shared.storage.url:
        return shared
    return attrs.evolve(shared, workspace=tmp_path / "replica-two")
