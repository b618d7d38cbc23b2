"""The HTTP surface on a real socket, driven by the clients users run."""

from __future__ import annotations

import json

import aiohttp
import anyio
import attrs
import openai
import pytest
import requests
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.sessions import api_session
from tests.fakes import GatedAgent

KEY = "sk-acceptance"


def sdk(server: RunningServer, api_key: str = "dummy") -> AsyncOpenAI:
    return AsyncOpenAI(base_url=server.base_url, api_key=api_key, max_retries=0)


async def test_the_openai_sdk_lists_retrieves_and_chats(config: Config) -> None:
    async with (
        running_server(build(config)) as server,
        sdk(server) as client,
    ):
        models = await client.models.list()
        assert [m.id for m in models.data] == ["nanobot-echo"]
        assert (await client.models.retrieve("nanobot-echo")).owned_by == "nanobot"
        reply = await client.chat.completions.create(
            model="nanobot-echo", messages=[{"role": "user", "content": "hi"}]
        )
        assert reply.choices[0].message.content == "echo: hi"
        assert reply.usage is not None
        assert reply.usage.total_tokens == 3


async def test_the_openai_sdk_streams_deltas(config: Config) -> None:
    async with (
        running_server(build(config)) as server,
        sdk(server) as client,
    ):
        stream = await client.chat.completions.create(
            model="nanobot-echo",
            messages=[{"role": "user", "content": "one two three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        pieces = []
        usage = None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        assert pieces == ["echo:", " one", " two", " three"]
        assert usage is not None
        assert usage.completion_tokens == 4


async def test_extra_body_session_ids_keep_conversations_apart(config: Config) -> None:
    store = InMemorySessionStore()
    async with running_server(build(config, store=store)) as server, sdk(server) as client:
        for session, text in (("alpha", "a1"), ("beta", "b1"), ("alpha", "a2"), (None, "d1")):
            extra = {"session_id": session} if session else None
            await client.chat.completions.create(
                model="nanobot-echo",
                messages=[{"role": "user", "content": text}],
                extra_body=extra,
            )
    assert [r.user_text for r in await store.history(api_session("alpha"))] == ["a1", "a2"]
    assert [r.user_text for r in await store.history(api_session("beta"))] == ["b1"]
    assert [r.user_text for r in await store.history(api_session(None))] == ["d1"]


async def test_another_model_is_a_bad_request_and_a_wrong_key_fails_auth(
    config: Config,
) -> None:
    keyed = attrs.evolve(config, api=attrs.evolve(config.api, api_key=KEY))
    async with running_server(build(keyed), api_key=KEY) as server:
        async with sdk(server, KEY) as good:
            with pytest.raises(openai.BadRequestError, match="Only configured model"):
                await good.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "hi"}]
                )
        async with sdk(server, "wrong") as bad:
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()


async def test_multipart_form_like_curl_and_requests_json(config: Config) -> None:
    async with running_server(build(config)) as server:
        url = f"{server.base_url}/chat/completions"

        def post_form() -> requests.Response:
            return requests.post(
                url,
                data={"message": "Summarize this", "session_id": "form"},
                files=[("files", ("notes.txt", b"plain words here", "text/plain"))],
                timeout=10,
            )

        def post_json() -> requests.Response:
            body = {"messages": [{"role": "user", "content": "hi"}], "session_id": "my-session"}
            return requests.post(url, json=body, timeout=10)

        form = await anyio.to_thread.run_sync(post_form)
        assert form.status_code == 200, form.text
        content = form.json()["choices"][0]["message"]["content"]
        assert content == "echo: Summarize this [notes.txt: 16 chars]"
        assert form.headers["X-Session-Id"] == "form"
        plain = await anyio.to_thread.run_sync(post_json)
        plain.raise_for_status()
        assert plain.json()["choices"][0]["message"]["content"] == "echo: hi"


async def test_a_client_leaving_mid_stream_cancels_its_turn_and_frees_the_session(
    config: Config,
) -> None:
    agent = GatedAgent(model="nanobot-echo")
    store = InMemorySessionStore()
    async with running_server(build(config, agent=agent, store=store)) as server:
        body = {
            "messages": [{"role": "user", "content": "cut"}],
            "session_id": "s",
            "stream": True,
        }
        url = f"{server.base_url}/chat/completions"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=body) as response:
                first = await response.content.readline()
                assert json.loads(first.removeprefix(b"data: "))["choices"][0]["delta"] == {
                    "role": "assistant"
                }
                await agent.started_event("cut").wait()
                response.close()  # the client goes away mid-stream
            with anyio.fail_after(5):
                await agent.ended_event("cut").wait()
            agent.gate("next").set()
            body = {"messages": [{"role": "user", "content": "next"}], "session_id": "s"}
            async with http.post(url, json=body) as response:
                answer = await response.json()
    assert answer["choices"][0]["message"]["content"] == "done next"
    assert [r.user_text for r in await store.history(api_session("s"))] == ["next"]
