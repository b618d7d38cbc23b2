"""Open WebUI 0.12.4's recorded requests replayed against a live server (front-ends.md).

Every request the real front end sent in one browser session (tests/fixtures) goes to
a server on a real socket in ``"latest"`` mode, in front of a model that answers as the
recording's stand-in did: ``ECHO[k]: <last user text>``, ``k`` the number of user
messages it was sent. So each answer equals the recorded one only if the model saw as
many turns as the conversation Open WebUI showed; then each session's stored history
is checked turn by turn. Once with forwarding only (as recorded), once with the
recipe's connection headers added.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import anyio
import attrs
import pytest

from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.app.bootstrap import build, session_store_path
from nanobot_api.app.config import AgentDefaults, AgentsConfig, ApiConfig, Config, ProviderConfig
from nanobot_api.app.harness import running_server
from nanobot_api.domain.branches import StoredTurn
from nanobot_api.domain.front_ends import PlainShape, auxiliary_task
from nanobot_api.domain.sessions import SessionKey
from tests.fixtures.openwebui import FORWARDING_ONLY, Recorded, recipe_headers, recorded
from tests.upstream import Received, ScriptedUpstream, Step, Text

CHAT = SessionKey("api", "5a89a383-23bd-47a3-b840-26caf370d514")
FILE_CHAT = SessionKey("api", "912ebd53-cc76-4849-8572-910e7bfb1e45")
TEMPORARY = SessionKey("api", "temporary:-7oX-E2mdadOzsw9AAAF")
_DROPPED = {"host", "content-length", "accept-encoding"}


def open_webui_backend(config: Config, upstream: str) -> Config:
    """The server as the recording's Open WebUI saw it: model ``scripted-1``."""
    return attrs.evolve(
        config,
        api=ApiConfig(history="latest"),
        agents=AgentsConfig(AgentDefaults(provider="custom", model="scripted-1")),
        providers={"custom": ProviderConfig(api_base=upstream, api_key="unused")},
    )


def stand_in(received: Received) -> Step:
    users = [m for m in received.messages if m["role"] == "user"]
    return Text(f"ECHO[{len(users)}]: {received.last_user_text}")


def answer_text(text: str) -> str:
    """The answer in a chat completion's body, JSON or an event stream."""
    if not text.startswith("data:"):
        return str(json.loads(text)["choices"][0]["message"]["content"])
    chunks = [json.loads(e[6:]) for e in text.split("\n") if e.startswith("data: {")]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def task_of(request: Recorded) -> str | None:
    body = request.body or {}
    shape = PlainShape(
        tuple((m["role"], m["content"]) for m in body["messages"]),
        stream=bool(body.get("stream")),
        has_tools=bool(body.get("tools")),
        from_open_webui=True,
    )
    return auxiliary_task(None, shape)


async def answer_of(response: aiohttp.ClientResponse) -> str:
    raw = await response.text()
    assert response.status == 200, raw
    return answer_text(raw)


def texts(turns: tuple[StoredTurn, ...], superseded: bool) -> list[tuple[str, str]]:
    return [
        (t.record.user_text, t.record.messages[-1].content or "")
        for t in turns
        if t.superseded == superseded
    ]


@pytest.mark.parametrize("recipe", [False, True], ids=["forwarding-only", "recipe"])
async def test_a_recorded_open_webui_session_leaves_each_chat_exactly_its_turns(
    config: Config, tmp_path: Path, recipe: bool
) -> None:
    lines = [json.loads(x) for x in FORWARDING_ONLY.read_text(encoding="utf-8").splitlines()]
    answers = {line["seq"]: answer_text(line["response_text"]) for line in lines if "body" in line}
    async with ScriptedUpstream(default=stand_in) as up:
        served = open_webui_backend(config, up.base_url)
        async with running_server(build(served)) as server, aiohttp.ClientSession() as http:
            for request in recorded():
                headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
                url = server.origin + request.path
                if not request.is_chat:
                    async with http.get(url, headers=headers) as response:
                        assert response.status == 200
                    continue
                if recipe:
                    headers |= recipe_headers(request, task_of(request))
                async with http.post(url, json=request.body, headers=headers) as response:
                    assert await answer_of(response) == answers[request.seq], request.seq
                    chat_id = request.headers["X-OpenWebUI-Chat-Id"]
                    assert response.headers["X-Session-Id"] == chat_id

    async with SqliteSessionStore(session_store_path(served)) as store:
        assert set(await store.sessions()) == {CHAT, FILE_CHAT, TEMPORARY}
        chat = await store.turns(CHAT)
        assert texts(chat, superseded=False) == [
            ("first message alpha", "ECHO[1]: first message alpha"),
            ("second message beta", "ECHO[2]: second message beta"),
            ("third after switch", "ECHO[3]: third after switch"),
        ]
        # The first answer to "second" (regenerated) and the edit (switched away from).
        assert texts(chat, superseded=True) == [
            ("second message beta", "ECHO[2]: second message beta"),
            ("edited first", "ECHO[1]: edited first"),
        ]
        (file_turn,) = texts(await store.turns(FILE_CHAT), superseded=False)
        assert file_turn[0].startswith("### Task:\nRespond to the user query")
        assert "PAPAYA" in file_turn[0]
        assert file_turn[1] == "ECHO[1]: " + file_turn[0]
        temporary = await store.turns(TEMPORARY)
        assert texts(temporary, superseded=False) == [("temp hello", "ECHO[1]: temp hello")]
        if recipe:
            assert [t.ids.answer for t in chat] == ["m-1", "m-2", "m-3", "m-4", "m-6"]


async def test_a_temporary_chat_leaves_nothing_once_idle_for_the_ttl(
    config: Config,
) -> None:
    """Open WebUI's temporary chat (``temporary:<socket id>``) is forgotten after
    ``api.temporaryTtlS`` of idleness; a normal chat stays."""
    wanted = {"1-send-first", "8-temp-chat"}
    requests = [r for r in recorded() if r.is_chat and r.step in wanted]
    async with ScriptedUpstream(default=stand_in) as up:
        served = open_webui_backend(config, up.base_url)
        served = attrs.evolve(served, api=attrs.evolve(served.api, temporary_ttl_s=0.6))
        async with (
            running_server(build(served)) as server,
            aiohttp.ClientSession() as http,
            SqliteSessionStore(session_store_path(served)) as store,
        ):
            for request in requests:
                headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED}
                async with http.post(
                    server.origin + request.path, json=request.body, headers=headers
                ) as response:
                    await answer_of(response)
            assert set(await store.sessions()) == {CHAT, TEMPORARY}
            # Another connection to the file sees the sweep: polled, as a person would.
            for _ in range(100):
                if TEMPORARY not in await store.sessions():
                    break
                await anyio.sleep(0.05)
            assert await store.turns(TEMPORARY) == ()
            assert set(await store.sessions()) == {CHAT}
