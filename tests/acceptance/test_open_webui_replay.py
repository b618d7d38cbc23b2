"""Open WebUI 0.12.4's recorded requests replayed against a live server (front-ends.md).

Every request the real front end sent in one browser session (tests/fixtures: once
with forwarding only, once with the recipe's connection headers) goes to a server on
a real socket in ``"latest"`` mode, in front of a model that answers as the
recording's stand-in did: ``ECHO[k]: <last user text>``, ``k`` the number of user
messages it was sent. So each answer equals the recorded one only if the model saw as
many turns as the conversation Open WebUI showed; then each session's stored history
is checked turn by turn, on both storage backends (SQLite files, PostgreSQL), read
back through the backend's own store.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp
import anyio
import attrs
import pytest

from nanobot_api.app.config import AgentDefaults, AgentsConfig, ApiConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.app.wiring.storage import Storage, storage_for
from nanobot_api.domain.branches import StoredTurn
from nanobot_api.domain.sessions import SessionKey
from tests.fixtures.openwebui import FORWARDING_ONLY, RECIPE, Recorded, answer_text, recorded
from tests.upstream import Received, ScriptedUpstream, Step, Text

_DROPPED = {"host", "content-length", "accept-encoding"}


def open_webui_backend(config: Config, upstream: str, storage_url: str = "") -> Config:
    """The server as the recording's Open WebUI saw it: model ``scripted-1``."""
    return attrs.evolve(
        config,
        api=ApiConfig(history="latest"),
        agents=AgentsConfig(AgentDefaults(provider="custom", model="scripted-1")),
        providers={"custom": ProviderConfig(api_base=upstream, api_key="unused")},
        storage=attrs.evolve(config.storage, url=storage_url),
    )


def backend_of(served: Config) -> Storage:
    """The served backend's stores, as another process would open them."""
    return storage_for(served)


def stand_in(received: Received) -> Step:
    users = [m for m in received.messages if m["role"] == "user"]
    return Text(f"ECHO[{len(users)}]: {received.last_user_text}")


def sessions_of(requests: list[Recorded]) -> tuple[SessionKey, SessionKey, SessionKey]:
    """The recording's chat, file chat and temporary chat, in the order they came."""
    ids = list(dict.fromkeys(r.chat_id for r in requests if r.is_chat))
    chat, file_chat, temporary = (SessionKey("api", i) for i in ids)
    assert temporary.session_id.startswith("temporary:")
    return chat, file_chat, temporary


async def replay(http: aiohttp.ClientSession, origin: str, requests: list[Recorded]) -> None:
    """Sends each request as recorded; every answer must be the one Open WebUI got."""
    for request in requests:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
        url = origin + request.path
        if not request.is_chat:
            async with http.get(url, headers=headers) as response:
                assert response.status == 200
            continue
        async with http.post(url, json=request.body, headers=headers) as response:
            raw = await response.text()
            assert response.status == 200, raw
            assert answer_text(raw) == request.answer, request.seq
            assert response.headers["X-Session-Id"] == request.chat_id


def texts(turns: tuple[StoredTurn, ...], superseded: bool) -> list[tuple[str, str]]:
    return [
        (t.record.user_text, t.record.messages[-1].content or "")
        for t in turns
        if t.superseded == superseded
    ]


@pytest.mark.parametrize("recording", [FORWARDING_ONLY, RECIPE], ids=["forwarding-only", "recipe"])
async def test_a_recorded_open_webui_session_leaves_each_chat_exactly_its_turns(
    config: Config, recording: Path, storage_url: str
) -> None:
    requests = recorded(recording)
    chat, file_chat, temporary = sessions_of(requests)
    async with ScriptedUpstream(default=stand_in) as up:
        served = open_webui_backend(config, up.base_url, storage_url)
        async with running_server(build(served)) as server, aiohttp.ClientSession() as http:
            await replay(http, server.origin, requests)

    async with backend_of(served).opened() as backend:
        store = backend.sessions
        assert set(await store.sessions()) == {chat, file_chat, temporary}
        turns = await store.turns(chat)
        assert texts(turns, superseded=False) == [
            ("first message alpha", "ECHO[1]: first message alpha"),
            ("second message beta", "ECHO[2]: second message beta"),
            ("third after switch", "ECHO[3]: third after switch"),
        ]
        # The first answer to "second" (regenerated) and the edit (switched away from).
        assert texts(turns, superseded=True) == [
            ("second message beta", "ECHO[2]: second message beta"),
            ("edited first", "ECHO[1]: edited first"),
        ]
        (file_turn,) = texts(await store.turns(file_chat), superseded=False)
        assert file_turn[0].startswith("### Task:\nRespond to the user query")
        assert "PAPAYA" in file_turn[0]
        assert file_turn[1] == "ECHO[1]: " + file_turn[0]
        assert texts(await store.turns(temporary), superseded=False) == [
            ("temp hello", "ECHO[1]: temp hello")
        ]
        if recording == RECIPE:
            # Each turn keeps Open WebUI's ids for its messages.
            sent = [
                r.headers["X-OpenWebUI-Message-Id"]
                for r in requests
                if r.chat_id == chat.session_id and not r.headers["X-OpenWebUI-Task"]
            ]
            assert [t.ids.answer for t in turns] == sent


async def test_a_temporary_chat_leaves_nothing_once_idle_for_the_ttl(
    config: Config, storage_url: str
) -> None:
    """Open WebUI's temporary chat (``temporary:<socket id>``) is forgotten after
    ``api.temporaryTtlS`` of idleness; a normal chat stays."""
    everything = recorded()
    chat, _, temporary = sessions_of(everything)
    requests = [r for r in everything if r.is_chat and r.step in {"1-send-first", "8-temp-chat"}]
    async with ScriptedUpstream(default=stand_in) as up:
        served = open_webui_backend(config, up.base_url, storage_url)
        served = attrs.evolve(served, api=attrs.evolve(served.api, temporary_ttl_s=0.6))
        async with (
            running_server(build(served)) as server,
            aiohttp.ClientSession() as http,
            backend_of(served).opened() as backend,
        ):
            store = backend.sessions
            await replay(http, server.origin, requests)
            assert set(await store.sessions()) == {chat, temporary}
            # Another connection to the file or database sees the sweep: polled, as a person would.
            for _ in range(100):
                if temporary not in await store.sessions():
                    break
                await anyio.sleep(0.05)
            assert await store.turns(temporary) == ()
            assert set(await store.sessions()) == {chat}
