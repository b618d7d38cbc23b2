"""Two servers on one store: a background response started on one is followed, resumed
and cancelled from the other, which reads its steps from the store (not from memory)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import attrs
import pytest
from openai import AsyncOpenAI

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
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


async def test_a_resent_conversation_resumes_the_paused_turn_on_another_replica(
    shared: Config, tmp_path: Path
) -> None:
    """The Agents SDK's tool loop resends everything, naming no conversation: the
    replica it lands on finds the paused session in the store."""
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    async with ScriptedUpstream() as up:
        providers = {"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up-123456")}
        config = attrs.evolve(
            shared, providers=providers, agents=AgentsConfig(AgentDefaults(model="m1"))
        )
        up.add(Calls((("get_weather", json.dumps({"city": "Oslo"})),)), Text("Sunny."))
        async with (
            running_server(build(config)) as one,
            running_server(build(_elsewhere(config, tmp_path))) as two,
            sdk(one) as first,
            sdk(two) as second,
        ):
            paused = await first.responses.create(model="m1", input="weather?", tools=[tool])
            (call,) = [o for o in paused.output if o.type == "function_call"]
            resent: list[object] = [
                {"role": "user", "content": "weather?"},
                call.model_dump(exclude_none=True),
                {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            ]
            done = await second.responses.create(model="m1", input=resent, tools=[tool])  # type: ignore[arg-type]
            assert done.output_text == "Sunny."
            assert done.conversation is None or done.conversation.id == paused.id
            assert up.received[-1].messages[-1]["content"] == "sunny"
            # One conversation: the paused turn was resumed, not a new one started.
            items = await second.conversations.items.list(paused.id, order="asc")
            assert [i.role for i in items.data if i.type == "message"] == ["user", "assistant"]


def _elsewhere(shared: Config, tmp_path: Path) -> Config:
    """The second replica: on PostgreSQL, in a workspace of its own."""
    if not shared.storage.url:
        return shared
    return attrs.evolve(shared, workspace=tmp_path / "replica-two")
