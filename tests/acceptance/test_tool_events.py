"""Opt-in tool progress in chat completion streams: `event: nanobot.tool` events, off by
default, masked like everything else the server shows."""

from __future__ import annotations

import json

import aiohttp
import attrs

from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.fakes import ToolStepAgent

SECRET = "sk-provider-secret-0123456789"


async def _events(url: str, body: dict[str, object]) -> list[tuple[str | None, str]]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        assert response.status == 200
        text = await response.text()
    events = []
    for block in text.strip().split("\n\n"):
        name = None
        data = ""
        for line in block.splitlines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        events.append((name, data))
    return events


async def test_tool_steps_stream_only_when_asked_and_masked(config: Config) -> None:
    api = attrs.evolve(config.api, api_key=SECRET)
    agent = ToolStepAgent(arguments=f'{{"q": "weather", "key": "{SECRET}"}}')
    app = build(attrs.evolve(config, api=api), agent=agent)
    async with running_server(app, api_key=SECRET) as server:
        url = f"{server.base_url}/chat/completions"
        body: dict[str, object] = {
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        }
        headers = {"Authorization": f"Bearer {SECRET}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.post(url, json=body) as response:
                plain = await response.text()
            body["stream_options"] = {"include_tool_events": True}
            async with session.post(url, json=body) as response:
                shown = await response.text()
    assert "nanobot.tool" not in plain
    tool = [
        json.loads(block.split("data: ", 1)[1])
        for block in shown.split("\n\n")
        if block.startswith("event: nanobot.tool")
    ]
    assert [(t["name"], t["status"]) for t in tool] == [("search", "started"), ("search", "done")]
    assert all(t["id"] == "call_1" for t in tool)
    assert SECRET not in shown
    assert "weather" in tool[0]["summary"]
    # The tool events come before the answer's text, and the stream still ends well.
    assert shown.index("nanobot.tool") < shown.index("it is sunny")
    assert shown.rstrip().endswith("data: [DONE]")
