"""The temporary chats' sweep over working in-memory stores, its clock moved past the TTL."""

from __future__ import annotations

import time

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.adapters.storage.memory_responses import (
    InMemoryConversationStore,
    InMemoryResponseStore,
)
from nanobot_api.app.temporary import TemporaryChats
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.conversations import ConversationRecord
from nanobot_api.domain.responses import ResponseRecord
from nanobot_api.domain.sessions import SessionKey

TTL_S = 10.0


def response(n: int, session: SessionKey, **changes: object) -> ResponseRecord:
    return ResponseRecord(f"resp_{n}", session, "m", time.time(), **changes)  # type: ignore[arg-type]


async def test_a_sweep_takes_the_records_of_idle_and_turnless_temporary_chats() -> None:
    """An idle chat's records go with it; a failed response's chat (no turn) goes in the
    pass for chats without turns; a run still vouched for and other sessions stay."""
    idle, failed, running, kept = (
        SessionKey("api", name)
        for name in ("temporary:idle", "temporary:failed", "temporary:running", "kept")
    )
    sessions, responses, records = (
        InMemorySessionStore(),
        InMemoryResponseStore(),
        InMemoryConversationStore(),
    )
    for key in (idle, kept):
        await sessions.commit(key, TurnRecord((Message.user("u"), Message.assistant("a"))))
        await records.put(ConversationRecord(key, time.time()))
    await responses.put(response(1, idle, status="completed"))
    await responses.note(idle, ["call_1"])
    await responses.put(response(2, failed, status="failed"))
    await responses.put(response(3, running, alive_until=time.time() + 1000))
    await responses.put(response(4, kept, status="completed"))
    later = time.time() + 2 * TTL_S
    sweep = TemporaryChats(sessions, TTL_S, records=(responses, records), clock=lambda: later)

    assert await sweep.sweep() == 1

    assert [await responses.get(f"resp_{n}") is None for n in (1, 2, 3, 4)] == [
        True,
        True,
        False,
        False,
    ]
    assert await responses.find(["call_1"], "api") is None
    assert await records.get(idle) is None
    assert await records.get(kept) is not None
    assert set(await sessions.sessions()) == {kept}
