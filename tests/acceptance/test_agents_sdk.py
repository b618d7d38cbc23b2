"""The Agents SDK's default model (the Responses API) runs a multi-turn agent against the
server, keeping the conversation with ``previous_response_id``."""

from __future__ import annotations

from agents import Agent, OpenAIResponsesModel, RunConfig, Runner
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server


async def test_a_multi_turn_agent_keeps_its_conversation(config: Config) -> None:
    store = InMemorySessionStore()
    async with running_server(build(config, store=store)) as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0)
        model = OpenAIResponsesModel(model="nanobot-echo", openai_client=client)
        agent = Agent(name="helper", instructions="Answer briefly.", model=model)
        settings = RunConfig(tracing_disabled=True)
        first = await Runner.run(agent, "hello agent", run_config=settings)
        assert first.final_output == "echo: hello agent"
        second = await Runner.run(
            agent,
            "and again",
            previous_response_id=first.last_response_id,
            run_config=settings,
        )
        # The echo agent says what it remembers: the conversation went on.
        assert second.final_output == 'echo: and again (turn 2; earlier: "hello agent")'
        streamed = Runner.run_streamed(
            agent, "streamed", previous_response_id=second.last_response_id, run_config=settings
        )
        async for _ in streamed.stream_events():
            pass
        assert streamed.final_output == (
            'echo: streamed (turn 3; earlier: "hello agent", "and again")'
        )
        await client.close()
    (session,) = (await store.sessions()).items()
    # One conversation: every turn continued the first response's session.
    assert session[1] == 3
