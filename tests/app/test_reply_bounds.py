"""What one turn may send back and what history may send upstream are bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.chat import ChatService
from nanobot_api.app.function_agent import agent
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.sessions import api_session
from nanobot_api.domain.turns import PreparedTurn, Turn
from tests.fakes import CollectingReply, TextOnlyAttachments

MARKER = "\n\n[reply cut: it reached the limit of 1,000 characters]"


async def test_a_runaway_reply_is_cut_with_a_marker_and_the_turn_still_answers() -> None:
    @agent(model="m")
    async def runaway(turn: Turn) -> AsyncIterator[str]:
        for _ in range(50):
            yield "x" * 300

    store = InMemorySessionStore()
    service = ChatService(runaway, store, TextOnlyAttachments(), timeout_s=5, max_reply_chars=1000)
    reply = CollectingReply()
    result = await service.run(PreparedTurn(api_session("s"), "go"), reply)
    assert result.text == "x" * 1000 + MARKER
    assert "".join(reply.deltas) == result.text
    (record,) = await store.history(api_session("s"))
    assert record.messages[1].content == result.text


async def test_history_sent_upstream_is_bounded_by_size() -> None:
    seen: list[Turn] = []

    @agent(model="m")
    async def looking(turn: Turn) -> str:
        seen.append(turn)
        return "ok"

    store = InMemorySessionStore()
    key = api_session("s")
    huge = TurnRecord((Message.user("big"), Message.assistant("y" * 3_000_000)))
    await store.commit(key, huge)
    await store.commit(key, TurnRecord((Message.user("small"), Message.assistant("fine"))))
    service = ChatService(looking, store, TextOnlyAttachments(), timeout_s=5)
    await service.run(PreparedTurn(key, "next"), CollectingReply())
    assert [t.user_text for t in seen[0].history] == ["small"]
