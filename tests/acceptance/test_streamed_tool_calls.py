"""The client's tool calls in a stream, read off a real socket as raw server-sent
events: each call starts with its id, type and name, then its arguments follow in the
pieces the model wrote them in, by ``index``; the server's own calls never show."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.client_tools import WEATHER
from tests.upstream import Calls, ScriptedUpstream, Text

MODEL = "MiniMax-M2.7"
KEY = "sk-up-secret-0042"


async def _stream_deltas(base_url: str, session: str, finish: str = "tool_calls") -> list[Any]:
    """Every ``delta.tool_calls`` entry of a streamed request, in order (the stream
    must end with ``finish``)."""
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "weather in Paris?"}],
        "tools": [WEATHER],
        "stream": True,
        "session_id": session,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{base_url}/chat/completions", json=body) as resp,
    ):
        assert resp.status == 200
        raw = (await resp.read()).decode()
    events = [e.removeprefix("data: ") for e in raw.split("\n\n") if e.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[-1]["choices"][0]["finish_reason"] == finish
    return [call for c in chunks for call in c["choices"][0]["delta"].get("tool_calls", [])]


def _assembled(deltas: list[Any]) -> dict[int, dict[str, str]]:
    calls: dict[int, dict[str, str]] = {}
    for delta in deltas:
        call = calls.setdefault(delta["index"], {"id": "", "name": "", "arguments": ""})
        call["id"] += delta.get("id", "")
        call["name"] += delta["function"].get("name", "")
        call["arguments"] += delta["function"]["arguments"]
    return calls


async def test_a_streamed_call_comes_in_pieces_and_only_the_clients_calls_show(
    tmp_path: Path,
) -> None:
    weather = ("get_weather", json.dumps({"city": "Paris"}))
    # The model calls the server's own tool and two of the client's in one answer.
    message = ("message", json.dumps({"content": "hi", "chat_id": "1"}))
    secret = ("get_weather", json.dumps({"city": KEY}))
    config = Config(
        agents=AgentsConfig(AgentDefaults(model=MODEL)),
        workspace=tmp_path / "ws",
    )
    async with ScriptedUpstream() as up:
        up.add(Calls((message, weather, secret)))
        providers = {"custom": ProviderConfig(api_base=up.base_url, api_key=KEY)}
        async with running_server(build(attrs.evolve(config, providers=providers))) as server:
            deltas = await _stream_deltas(server.base_url, "pieces")
    first = deltas[0]
    assert first["index"] == 0
    assert first["type"] == "function"
    assert first["id"]
    assert first["function"] == {"name": "get_weather", "arguments": ""}
    # The upstream wrote each call's arguments in two pieces; each went out as written.
    fragments = [d for d in deltas if d["index"] == 0 and "id" not in d]
    assert [f["function"]["arguments"] for f in fragments] == ['{"city":', ' "Paris"}']
    calls = _assembled(deltas)
    assert sorted(calls) == [0, 1]  # the server's own call is not the client's to see
    assert calls[0]["name"] == calls[1]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == {"city": "Paris"}
    # A configured secret split across two pieces is masked all the same.
    assert json.loads(calls[1]["arguments"]) == {"city": "***"}
    assert KEY not in json.dumps(deltas)


async def test_a_call_cut_at_the_reply_bound_ends_the_stream_for_length(tmp_path: Path) -> None:
    """Pieces already sent cannot be taken back: the stream says the answer was cut,
    and the turn is not paused (the next message is an ordinary turn)."""
    runaway = ("get_weather", json.dumps({"city": "x" * 400}))
    config = Config(
        agents=AgentsConfig(AgentDefaults(model=MODEL, max_reply_chars=100)),
        workspace=tmp_path / "ws",
    )
    async with ScriptedUpstream() as up:
        up.add(Calls((runaway,)), Text("fine"))
        providers = {"custom": ProviderConfig(api_base=up.base_url, api_key=KEY)}
        async with running_server(build(attrs.evolve(config, providers=providers))) as server:
            deltas = await _stream_deltas(server.base_url, "cut", finish="length")
            async with (
                aiohttp.ClientSession() as http,
                http.post(
                    f"{server.base_url}/chat/completions",
                    json={"messages": [{"role": "user", "content": "hi"}], "session_id": "cut"},
                ) as resp,
            ):
                after = await resp.json()
    assert deltas[0]["function"]["name"] == "get_weather"
    assert after["choices"][0]["message"]["content"] == "fine"
