"""Real client libraries on a real socket, naming sessions the ways they can."""

from __future__ import annotations

import attrs
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from nanobot_api.domain.sessions import SessionKey


def chat_model(server: RunningServer, **kwargs: object) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=server.base_url,
        api_key="dummy",  # type: ignore[arg-type]
        model="nanobot-echo",
        max_retries=0,
        **kwargs,  # type: ignore[arg-type]
    )


async def turns(store: InMemorySessionStore, session_id: str) -> list[str]:
    return [r.user_text for r in await store.history(SessionKey("api", session_id))]


async def test_langchain_chat_openai_with_extra_body_sessions(config: Config) -> None:
    store = InMemorySessionStore()
    async with running_server(build(config, store=store)) as server:
        alice = chat_model(server, extra_body={"session_id": "alice"})
        bob = chat_model(server, extra_body={"session_id": "bob"})
        answer = await alice.ainvoke([HumanMessage("hello from alice")])
        assert answer.content == "echo: hello from alice"
        pieces = [chunk.content async for chunk in bob.astream([HumanMessage("hi from bob")])]
        assert "".join(str(p) for p in pieces) == "echo: hi from bob"
        assert len([p for p in pieces if p]) > 1, "streamed in pieces"
        await alice.ainvoke([HumanMessage("again")])
    assert await turns(store, "alice") == ["hello from alice", "again"]
    assert await turns(store, "bob") == ["hi from bob"]


async def test_langchain_whole_conversations_with_a_session_header_in_latest_mode(
    config: Config,
) -> None:
    latest = attrs.evolve(config, api=attrs.evolve(config.api, history="latest"))
    store = InMemorySessionStore()
    async with running_server(build(latest, store=store)) as server:
        llm = chat_model(server, default_headers={"X-Session-Id": "lc"})
        history = [SystemMessage("Be brief."), HumanMessage("one")]
        first = await llm.ainvoke(history)
        history += [first, HumanMessage("two")]
        second = await llm.ainvoke(history)
        assert second.content == 'echo: two (turn 2; earlier: "one")'  # "one" was remembered
        assert isinstance(first, AIMessage)
    assert await turns(store, "lc") == ["one", "two"]


async def test_the_openai_sdk_with_a_fixed_session_header_like_the_llm_cli(
    config: Config,
) -> None:
    store = InMemorySessionStore()
    async with (
        running_server(build(config, store=store)) as server,
        AsyncOpenAI(
            base_url=server.base_url,
            api_key="dummy",
            default_headers={"X-Session-Id": "llm-cli"},
            max_retries=0,
        ) as client,
    ):
        for text in ("first", "second"):
            stream = await client.chat.completions.create(
                model="nanobot-echo", messages=[{"role": "user", "content": text}], stream=True
            )
            async for _ in stream:
                pass
        raw = await client.chat.completions.with_raw_response.create(
            model="nanobot-echo", messages=[{"role": "user", "content": "third"}]
        )
        assert raw.headers["X-Session-Id"] == "llm-cli"
    assert await turns(store, "llm-cli") == ["first", "second", "third"]
