"""`nanobot sessions list|show|clear` over a session store."""

from __future__ import annotations

import io

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.sessions_admin import clear_session, list_sessions, show_session
from nanobot_api.domain.branches import NO_IDS
from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord
from nanobot_api.domain.sessions import SessionKey

A = SessionKey("api", "my-session")


async def filled() -> InMemorySessionStore:
    store = InMemorySessionStore()
    call = ToolCall("call_1", "add", '{"a": 1}')
    await store.commit(
        A,
        TurnRecord(
            (
                Message.user("1+1?"),
                Message.assistant(None, (call,)),
                Message.tool_result("call_1", "2"),
                Message.assistant("Two."),
            )
        ),
    )
    await store.commit(A, TurnRecord((Message.user("x" * 3000), Message.assistant("ok"))))
    await store.commit(SessionKey("api", "b"), TurnRecord((Message.user("hi"),)))
    return store


async def test_list_shows_each_session_with_its_turns() -> None:
    out = io.StringIO()
    assert await list_sessions(await filled(), out) == 0
    assert out.getvalue() == "api:b           1 turn\napi:my-session  2 turns\n"


async def test_list_of_nothing_says_so() -> None:
    out = io.StringIO()
    assert await list_sessions(InMemorySessionStore(), out) == 0
    assert out.getvalue() == "No sessions.\n"


async def test_show_prints_every_message_and_cuts_long_ones() -> None:
    out = io.StringIO()
    assert await show_session(await filled(), A, out) == 0
    lines = out.getvalue().splitlines()
    assert lines[:6] == [
        "--- turn 1 ---",
        "user: 1+1?",
        'assistant -> add({"a": 1}) [call_1]',
        "tool [call_1]: 2",
        "assistant: Two.",
        "--- turn 2 ---",
    ]
    assert lines[6].endswith("... [1000 more chars]")
    assert lines[7] == "assistant: ok"


async def test_show_of_an_unknown_session_exits_1() -> None:
    out = io.StringIO()
    assert await show_session(await filled(), SessionKey("api", "nobody"), out) == 1
    assert out.getvalue() == "Session api:nobody has no turns.\n"


async def test_clear_forgets_the_session_and_says_how_much() -> None:
    store = await filled()
    out = io.StringIO()
    assert await clear_session(store, A, out) == 0
    assert out.getvalue() == "Cleared 2 turns from api:my-session.\n"
    assert await store.history(A) == ()
    assert list(await store.sessions()) == [SessionKey("api", "b")]


async def test_show_all_lists_superseded_turns_with_the_turn_each_follows() -> None:
    store = InMemorySessionStore()
    await store.commit(A, TurnRecord((Message.user("q"), Message.assistant("a1"))))
    await store.commit_branch(
        A, [], [], TurnRecord((Message.user("q"), Message.assistant("a2"))), NO_IDS
    )
    out = io.StringIO()
    assert await show_session(store, A, out, every=True) == 0
    assert out.getvalue().splitlines() == [
        "--- #1 (superseded, first) ---",
        "user: q",
        "assistant: a1",
        "--- #2 (active, first) ---",
        "user: q",
        "assistant: a2",
    ]
    out = io.StringIO()
    assert await show_session(store, A, out) == 0
    assert out.getvalue().splitlines() == ["--- turn 1 ---", "user: q", "assistant: a2"]
    assert await show_session(store, SessionKey("api", "none"), io.StringIO(), every=True) == 1
