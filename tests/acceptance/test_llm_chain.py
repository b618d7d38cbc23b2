"""The whole chain on real sockets: the openai SDK -> nanobot -> the scripted upstream."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import openai
import pytest
from openai import AsyncOpenAI

from nanobot_api.app.config import AgentDefaults, AgentsConfig, Config, ProviderConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.upstream import Break, Calls, ScriptedUpstream, Status, Text, closed_port

UPSTREAM_KEY = "sk-upstream-secret-0123456789"


def llm_config(config: Config, api_base: str, **defaults: Any) -> Config:
    agent = AgentDefaults(provider="custom", model="acme-large", **defaults)
    return attrs.evolve(
        config,
        agents=AgentsConfig(agent),
        providers={"custom": ProviderConfig(api_base=api_base, api_key=UPSTREAM_KEY)},
    )


@asynccontextmanager
async def llm_server(
    config: Config, upstream_url: str, **defaults: Any
) -> AsyncIterator[AsyncOpenAI]:
    app = build(llm_config(config, upstream_url, **defaults))
    async with (
        running_server(app) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client,
    ):
        yield client


async def test_a_configured_provider_is_served_streamed_and_not(config: Config) -> None:
    async with (
        ScriptedUpstream() as up,
        llm_server(config, up.base_url, system_prompt="Be kind.") as client,
    ):
        assert [m.id for m in (await client.models.list()).data] == ["acme-large"]
        up.add(Text("Hello Ann.", usage=(20, 3)))
        reply = await client.chat.completions.create(
            model="acme-large",
            messages=[{"role": "user", "content": "I am Ann"}],
            extra_body={"session_id": "s1"},
        )
        assert reply.choices[0].message.content == "Hello Ann."
        assert reply.usage is not None
        assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (20, 3)

        up.add(Text("You are Ann.", usage=(30, 4)))
        stream = await client.chat.completions.create(
            model="acme-large",
            messages=[{"role": "user", "content": "Who am I?"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"session_id": "s1"},
        )
        pieces, usage = [], None
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage or usage
        # Pieces that reach the server together go on together (one write per read).
        assert "".join(pieces) == "You are Ann."
        assert usage is not None
        assert usage.total_tokens == 34

    sent = up.received[-1]
    assert [(m["role"], m["content"]) for m in sent.messages] == [
        ("system", "Be kind."),
        ("user", "I am Ann"),
        ("assistant", "Hello Ann."),
        ("user", "Who am I?"),
    ]
    assert sent.body["model"] == "acme-large"
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    # A caller reading the whole answer at once gets it upstream in one document too.
    assert [r.body.get("stream", False) for r in up.received] == [False, True]


async def test_streamed_text_reaches_the_client_piece_by_piece_as_the_model_writes_it(
    config: Config,
) -> None:
    """The first piece is read by the client while the model still holds the second."""
    gate = asyncio.Event()
    async with (
        ScriptedUpstream([Text("first second", gate=gate)]) as up,
        llm_server(config, up.base_url) as client,
    ):
        stream = await client.chat.completions.create(
            model="acme-large",
            messages=[{"role": "user", "content": "go"}],
            stream=True,
            extra_body={"session_id": "pieces"},
        )
        pieces: list[str] = []
        with anyio.fail_after(10):
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    gate.set()  # only now does the model write the rest
    assert pieces == ["first", " second"]


async def test_history_is_kept_in_the_workspace_file(config: Config) -> None:
    async with ScriptedUpstream() as up, llm_server(config, up.base_url) as client:
        await client.chat.completions.create(
            model="acme-large", messages=[{"role": "user", "content": "remember me"}]
        )
    path = config.workspace / "sessions.sqlite3"
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT session_key, n_messages FROM turns").fetchall()
    assert rows == [("api:default", 2)]


async def test_an_image_reaches_the_model_as_a_data_url(config: Config) -> None:
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    )
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    async with ScriptedUpstream() as up, llm_server(config, up.base_url) as client:
        await client.chat.completions.create(
            model="acme-large",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        )
    parts = up.received[0].messages[-1]["content"]
    assert parts[0] == {"type": "text", "text": "what is it?"}
    assert parts[-1] == {"type": "image_url", "image_url": {"url": url}}


async def test_a_streamed_turn_stays_open_across_tool_calls(config: Config) -> None:
    # No tools are registered yet (the message tool comes later): an unknown tool's call
    # is answered with a tool error and the loop carries on.
    async with ScriptedUpstream() as up, llm_server(config, up.base_url) as client:
        up.add(Calls((("lookup", "{}"),), text="Checking."), Text("Done."))
        stream = await client.chat.completions.create(
            model="acme-large", messages=[{"role": "user", "content": "go"}], stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "Checking.\n\nDone."
    assert "no tool named 'lookup'" in up.received[1].messages[-1]["content"]


@pytest.mark.parametrize(
    ("step", "status"),
    [(Status(503, "overloaded"), "HTTP 503"), (Status(401, UPSTREAM_KEY), "HTTP 401")],
)
async def test_upstream_errors_are_502_naming_the_status_never_the_key(
    config: Config, step: Status, status: str
) -> None:
    # A 2 s budget leaves room for two retries of a 503 (0.5 s, 1 s), not a third (2 s).
    config = attrs.evolve(config, api=attrs.evolve(config.api, timeout=2.0))
    async with ScriptedUpstream() as up, llm_server(config, up.base_url) as client:
        up.add(*[step] * 8)
        with pytest.raises(openai.APIStatusError) as failure:
            await client.chat.completions.create(
                model="acme-large", messages=[{"role": "user", "content": "hi"}]
            )
    assert failure.value.status_code == 502
    assert status in str(failure.value.body)
    assert UPSTREAM_KEY not in str(failure.value.body)
    assert len(up.received) == (3 if step.status == 503 else 1)


async def test_an_unreachable_provider_is_a_502(config: Config) -> None:
    async with llm_server(config, f"http://127.0.0.1:{closed_port()}/v1") as client:
        with pytest.raises(openai.APIStatusError) as failure:
            await client.chat.completions.create(
                model="acme-large", messages=[{"role": "user", "content": "hi"}]
            )
    assert failure.value.status_code == 502


async def test_a_stream_cut_upstream_ends_in_an_error_event_without_done(config: Config) -> None:
    async with ScriptedUpstream() as up, llm_server(config, up.base_url) as client:
        up.add(Text("kept"), Break("half"))
        await client.chat.completions.create(
            model="acme-large", messages=[{"role": "user", "content": "first"}]
        )
        raw = await client.chat.completions.with_raw_response.create(
            model="acme-large", messages=[{"role": "user", "content": "second"}], stream=True
        )
        body = (await raw.http_response.aread()).decode()
        up.add(Text("third answer"))
        await client.chat.completions.create(
            model="acme-large", messages=[{"role": "user", "content": "third"}]
        )
    assert '"error"' in body
    assert "[DONE]" not in body
    assert '"finish_reason": "stop"' not in body
    assert '"finish_reason":"stop"' not in body
    # The cut turn left nothing behind.
    assert [m["content"] for m in up.received[-1].messages] == ["first", "kept", "third"]
