from __future__ import annotations

import anyio
import pytest

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.echo import EchoAgent
from nanobot_api.domain.attachments import Upload
from nanobot_api.domain.conversation import Usage
from nanobot_api.domain.errors import InvalidRequest, TurnTimedOut, UpstreamFailed
from nanobot_api.domain.ports import Agent
from nanobot_api.domain.sessions import api_session
from nanobot_api.domain.turns import EMPTY_REPLY_FALLBACK, ChatRequest, PreparedTurn
from tests.fakes import CollectingReply, FailingAgent, GatedAgent, SilentAgent, TextOnlyAttachments


def service_for(agent: Agent, store: InMemorySessionStore, timeout_s: float = 30) -> ChatService:
    return ChatService(agent, store, TextOnlyAttachments(), timeout_s=timeout_s)


def turn(text: str, session: str | None = None) -> PreparedTurn:
    return PreparedTurn(api_session(session), text)


@pytest.fixture(name="store")
def _store() -> InMemorySessionStore:
    return InMemorySessionStore()


async def test_a_completed_turn_is_streamed_and_committed(store: InMemorySessionStore) -> None:
    service = service_for(EchoAgent(), store)
    reply = CollectingReply()
    result = await service.run(turn("hello there", "a"), reply)
    assert result.text == "echo: hello there"
    assert "".join(reply.deltas) == result.text
    assert len(reply.deltas) == 3, "the echo agent streams word by word"
    assert result.usage == reply.usage == Usage(2, 3)
    history = await store.history(api_session("a"))
    assert [m.content for m in history[0].messages] == ["hello there", "echo: hello there"]


async def test_the_next_turn_sees_the_history_of_its_session_only(
    store: InMemorySessionStore,
) -> None:
    agent = GatedAgent()
    for text in ("a1", "b1", "a2"):
        agent.gate(text).set()
    service = service_for(agent, store)
    await service.run(turn("a1", "A"), CollectingReply())
    await service.run(turn("b1", "B"), CollectingReply())
    await service.run(turn("a2", "A"), CollectingReply())
    last = agent.seen[-1]
    assert [r.user_text for r in last.history] == ["a1"]


async def test_two_turns_of_one_session_never_overlap_and_keep_arrival_order(
    store: InMemorySessionStore,
) -> None:
    agent = GatedAgent()
    service = service_for(agent, store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, turn("first", "s"), CollectingReply())
        await agent.started_event("first").wait()
        tg.start_soon(service.run, turn("second", "s"), CollectingReply())
        tg.start_soon(service.run, turn("third", "s"), CollectingReply())
        await anyio.wait_all_tasks_blocked()
        assert agent.running == ["first"], "later turns wait for the session"
        agent.gate("first").set()
        await agent.started_event("second").wait()
        assert agent.running == ["second"]
        agent.gate("second").set()
        agent.gate("third").set()
    assert [t.text for t in agent.seen] == ["first", "second", "third"]
    assert agent.max_overlap_per_session["api:s"] == 1
    assert [r.user_text for r in await store.history(api_session("s"))] == [
        "first",
        "second",
        "third",
    ]
    assert service.busy_sessions == 0, "locks of idle sessions are released"


async def test_turns_of_two_sessions_run_at_the_same_time(store: InMemorySessionStore) -> None:
    agent = GatedAgent()
    service = service_for(agent, store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, turn("x", "one"), CollectingReply())
        tg.start_soon(service.run, turn("y", "two"), CollectingReply())
        await agent.started_event("x").wait()
        await agent.started_event("y").wait()
        assert sorted(agent.running) == ["x", "y"]
        agent.gate("x").set()
        agent.gate("y").set()


async def test_a_turn_over_the_time_budget_times_out_and_leaves_no_trace(
    store: InMemorySessionStore,
) -> None:
    service = service_for(GatedAgent(), store, timeout_s=0.05)
    with pytest.raises(TurnTimedOut, match=r"Request timed out after 0.05s"):
        await service.run(turn("never opened", "t"), CollectingReply())
    assert await store.history(api_session("t")) == ()


async def test_a_failed_turn_leaves_history_as_it_was(store: InMemorySessionStore) -> None:
    await service_for(EchoAgent(), store).run(turn("kept", "f"), CollectingReply())
    failing = service_for(FailingAgent(UpstreamFailed("Upstream model error: HTTP 500")), store)
    with pytest.raises(UpstreamFailed):
        await failing.run(turn("lost", "f"), CollectingReply())
    assert [r.user_text for r in await store.history(api_session("f"))] == ["kept"]


async def test_a_cancelled_turn_leaves_no_trace_and_frees_the_session(
    store: InMemorySessionStore,
) -> None:
    agent = GatedAgent()
    service = service_for(agent, store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run, turn("cut", "c"), CollectingReply())
        await agent.started_event("cut").wait()
        tg.cancel_scope.cancel()
    assert await store.history(api_session("c")) == ()
    agent.gate("next").set()
    assert (await service.run(turn("next", "c"), CollectingReply())).text == "done next"


async def test_an_empty_reply_becomes_the_fallback_text(store: InMemorySessionStore) -> None:
    reply = CollectingReply()
    result = await service_for(SilentAgent(), store).run(turn("hi"), reply)
    assert result.text == EMPTY_REPLY_FALLBACK == "".join(reply.deltas)
    assert result.usage == Usage(3, 0)
    history = await store.history(api_session(None))
    assert history[0].messages[-1].content == EMPTY_REPLY_FALLBACK


async def test_prepare_refuses_another_model_and_accepts_the_served_one(
    store: InMemorySessionStore,
) -> None:
    service = service_for(EchoAgent(), store)
    request = ChatRequest(api_session(None), "hi", model="gpt-4o")
    with pytest.raises(InvalidRequest, match="Only configured model 'nanobot-echo' is available"):
        await service.prepare(request)
    for model in (None, "nanobot-echo"):
        prepared = await service.prepare(ChatRequest(api_session(None), "hi", model=model))
        assert prepared.text == "hi"


async def test_history_notes_attachments_without_their_content(
    store: InMemorySessionStore,
) -> None:
    service = service_for(EchoAgent(), store)
    request = ChatRequest(api_session("d"), "read", (Upload(b"x" * 50, "notes.txt"),))
    result = await service.run(await service.prepare(request), CollectingReply())
    assert result.text == "echo: read [notes.txt: 50 chars]"
    user = (await store.history(api_session("d")))[0].messages[0]
    assert user.content == "read\n[document: notes.txt, 50 chars]"
