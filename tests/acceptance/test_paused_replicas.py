"""A chat-completions turn paused on a client tool holds no lease: with two `nanobot
serve` replicas on one PostgreSQL, a pause made through one is gone on with, or found
expired, by the other (clients.md: "any process may close or expire it")."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from openai import AsyncOpenAI, BadRequestError

from nanobot_api.domain.pauses import NOT_RETURNED
from tests.acceptance.replicas import Replica, replica
from tests.client_tools import WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text

pytestmark = pytest.mark.slow
TIMEOUT_S = 1.5
WEATHER_IN_PARIS = ("get_weather", json.dumps({"city": "Paris"}))


def sdk(server: Replica) -> AsyncOpenAI:
    return AsyncOpenAI(base_url=f"{server.origin}/v1", api_key="x", max_retries=0)


async def pause(client: AsyncOpenAI, session: str) -> str:
    """Asks for the weather in ``session``; the turn pauses on the client's tool: its id."""
    paused = await client.chat.completions.create(
        model="m1",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER],
        extra_body={"session_id": session},
    )
    assert paused.choices[0].finish_reason == "tool_calls"
    (call,) = paused.choices[0].message.tool_calls or []
    return call.id


async def send_result(client: AsyncOpenAI, session: str, call_id: str) -> str | None:
    """The client's result for ``call_id``, as a ``tool`` message alone: the answer."""
    answer = await client.chat.completions.create(
        model="m1",
        messages=[{"role": "tool", "tool_call_id": call_id, "content": "sunny"}],
        tools=[WEATHER],
        extra_body={"session_id": session},
    )
    return answer.choices[0].message.content


async def test_a_pause_made_on_one_replica_is_gone_on_with_or_expired_on_another(
    tmp_path: Path, postgres_url: str
) -> None:
    script = [Calls((WEATHER_IN_PARIS,)), Text("Sunny."), Calls((WEATHER_IN_PARIS,))]
    async with ScriptedUpstream([*script, Text("Hello again.")]) as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "storage": {"url": postgres_url},
            "api": {"toolResultTimeoutS": TIMEOUT_S},
        }
        async with (
            replica(tmp_path, config, "a") as a,
            replica(tmp_path, config, "b") as b,
            sdk(a) as on_a,
            sdk(b) as on_b,
        ):
            # Answered in time, through the other replica: the turn goes on there.
            call = await pause(on_a, "answered")
            assert await send_result(on_b, "answered", call) == "Sunny."
            assert up.received[1].messages[-1] == {
                "role": "tool",
                "content": "sunny",
                "tool_call_id": call,
            }
            # Left unanswered: the other replica finds it expired.
            late = await pause(on_a, "late")
            await anyio.sleep(TIMEOUT_S + 0.5)
            with pytest.raises(BadRequestError) as refused:
                await send_result(on_b, "late", late)
            assert late in str(refused.value)
            assert "expired" in str(refused.value)
            assert len(up.received) == 3  # the late result reached no model
            # ...and closes it: the next message there is a new turn after it.
            answer = await on_b.chat.completions.create(
                model="m1",
                messages=[{"role": "user", "content": "hello?"}],
                extra_body={"session_id": "late"},
            )
            assert answer.choices[0].message.content == "Hello again."
            history = up.received[3].messages
    assert [m["role"] for m in history] == ["user", "assistant", "tool", "user"]
    assert (history[2]["tool_call_id"], history[2]["content"]) == (late, NOT_RETURNED)
