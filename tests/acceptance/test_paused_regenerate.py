"""A front end's regenerate or edit while a turn waits for the client's tool results
(clients.md, "Client tools"): the pause is closed first (its missing calls get "not
returned by the client"), then the branch is followed like any other; checked in the
store a live server wrote (SQLite file, PostgreSQL), turn by turn."""

from __future__ import annotations

import json
from typing import Any

import attrs
from openai import AsyncOpenAI

from nanobot_api.app.config import AgentDefaults, AgentsConfig, ApiConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.app.wiring.storage import storage_for
from nanobot_api.domain.branches import StoredTurn
from nanobot_api.domain.pauses import NOT_RETURNED
from nanobot_api.domain.sessions import SessionKey
from tests.client_tools import WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text

CHAT = "owui-paused"


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}


def shape(turn: StoredTurn) -> list[tuple[str, str]]:
    """Each message of a stored turn: its role and its text or its calls' names."""
    return [
        (m.role, m.content or ",".join(c.name for c in m.tool_calls)) for m in turn.record.messages
    ]


async def test_a_regenerate_and_an_edit_close_the_pause_then_follow_the_branch(
    config: Config, storage_url: str
) -> None:
    weather = Calls((("get_weather", json.dumps({"city": "Paris"})),))
    async with ScriptedUpstream() as up:
        up.add(Text("one"), weather, Text("sunny, I guess"), weather, Text("edited one"))
        served = attrs.evolve(
            config,
            api=ApiConfig(history="latest"),
            agents=AgentsConfig(AgentDefaults(model="scripted-1")),
            providers={"custom": ProviderConfig(api_base=up.base_url, api_key="unused")},
            storage=attrs.evolve(config.storage, url=storage_url),
        )
        async with (
            running_server(build(served)) as server,
            AsyncOpenAI(
                base_url=server.base_url,
                api_key="x",
                max_retries=0,
                default_headers={"X-OpenWebUI-Chat-Id": CHAT},
            ) as client,
        ):

            async def send(*messages: dict[str, str]) -> list[Any]:
                """Streams a turn as Open WebUI does (with tools); the chunks' deltas."""
                stream = await client.chat.completions.create(
                    model="scripted-1", messages=list(messages), tools=[WEATHER], stream=True
                )
                return [c.choices[0].delta async for c in stream if c.choices]

            asked = (user("first"), assistant("one"), user("weather in Paris?"))
            await send(user("first"))
            paused = await send(*asked)
            regenerated = await send(*asked)  # the same conversation again: regenerate
            await send(*asked, assistant("sunny, I guess"), user("and in Rome?"))
            edited = await send(user("first, edited"))  # an edit of the first message

    assert any(d.tool_calls for d in paused)
    assert "".join(d.content or "" for d in regenerated) == "sunny, I guess"
    assert "".join(d.content or "" for d in edited) == "edited one"
    # What the model was sent: never a superseded turn, nor the closed pause.
    assert [m["content"] for m in up.received[2].messages] == ["first", "one", "weather in Paris?"]
    assert [m["content"] for m in up.received[4].messages] == ["first, edited"]

    async with storage_for(served).opened() as backend:
        turns = await backend.sessions.turns(SessionKey("api", CHAT))
    # Closing a pause stores the closed version of the turn beside the paused one (the
    # paused version stays, superseded); the regenerate and the edit then branch off.
    asked_paris = [("user", "weather in Paris?"), ("assistant", "get_weather")]
    asked_rome = [("user", "and in Rome?"), ("assistant", "get_weather")]
    closed = [("tool", NOT_RETURNED)]
    assert [(t.no, t.parent, t.superseded, t.record.paused_at is not None) for t in turns] == [
        (1, None, True, False),
        (2, 1, True, True),
        (3, 1, True, False),
        (4, 1, True, False),
        (5, 4, True, True),
        (6, 4, True, False),
        (7, None, False, False),
    ]
    assert [shape(t) for t in turns] == [
        [("user", "first"), ("assistant", "one")],
        asked_paris,
        asked_paris + closed,
        [("user", "weather in Paris?"), ("assistant", "sunny, I guess")],
        asked_rome,
        asked_rome + closed,
        [("user", "first, edited"), ("assistant", "edited one")],
    ]
