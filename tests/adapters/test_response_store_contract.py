"""The ResponseStore, ResponseLog and ConversationStore contracts, against the fakes and
SQLite alike (and a second connection to the same file, as another process would read)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.adapters.storage.memory_responses import (
    InMemoryConversationStore,
    InMemoryResponseStore,
)
from nanobot_api.adapters.storage.postgres_responses import (
    PostgresConversationStore,
    PostgresResponseStore,
)
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.adapters.storage.sqlite_responses import (
    SqliteConversationStore,
    SqliteResponseStore,
)
from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord, Usage
from nanobot_api.domain.conversations import ConversationRecord
from nanobot_api.domain.models import ToolCallPiece
from nanobot_api.domain.responses import (
    CallPiece,
    ClientCall,
    Ended,
    ResponseError,
    ResponseRecord,
    TextDelta,
    ToolProgress,
)
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import scratch_database

Responses = InMemoryResponseStore | SqliteResponseStore | PostgresResponseStore
Records = InMemoryConversationStore | SqliteConversationStore | PostgresConversationStore
Sessions = InMemorySessionStore | SqliteSessionStore


@pytest.fixture(name="responses", params=["memory", "sqlite", "postgres"])
async def _responses(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Responses]:
    if request.param == "memory":
        yield InMemoryResponseStore()
        return
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield PostgresResponseStore(db)
        return
    async with SqliteResponseStore(tmp_path / "responses.sqlite3") as store:
        yield store


@pytest.fixture(name="records", params=["memory", "sqlite", "postgres"])
async def _records(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Records]:
    if request.param == "memory":
        yield InMemoryConversationStore()
        return
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield PostgresConversationStore(db)
        return
    async with SqliteConversationStore(tmp_path / "responses.sqlite3") as store:
        yield store


@pytest.fixture(name="sessions", params=["memory", "sqlite"])
async def _sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Sessions]:
    if request.param == "memory":
        yield InMemorySessionStore()
        return
    async with SqliteSessionStore(tmp_path / "sessions.sqlite3") as store:
        yield store


def record(n: int, session: str = "s", **changes: object) -> ResponseRecord:
    base = ResponseRecord(
        id=f"resp_{n}",
        session=SessionKey("api", session),
        model="m",
        created_at=1000.0 + n,
        background=True,
        named=True,
        previous_response_id=None,
        instructions="be brief",
        input=(Message("system", "be brief"), Message.user("hi"), Message.tool_result("c", "r")),
    )
    return attrs.evolve(base, **changes)


async def test_a_record_reads_back_whole(responses: Responses) -> None:
    done = record(
        1,
        status="completed",
        output_text="héllo",
        calls=(ToolCall("c1", "f", '{"a": 1}'),),
        usage=Usage(3, 4),
        error=ResponseError("server_error", "x"),
        turn_no=2,
    )
    await responses.put(done)
    assert await responses.get("resp_1") == done
    assert await responses.get("resp_2") is None


async def test_a_put_replaces_but_never_clears_a_cancel_request(responses: Responses) -> None:
    await responses.put(record(1))
    marked = await responses.request_cancel("resp_1")
    assert marked is not None
    assert marked.cancel_requested
    await responses.put(record(1, output_text="more"))
    again = await responses.get("resp_1")
    assert again is not None
    assert again.cancel_requested
    assert again.output_text == "more"


async def test_a_finished_response_is_not_marked_for_cancel(responses: Responses) -> None:
    await responses.put(record(1, status="completed"))
    marked = await responses.request_cancel("resp_1")
    assert marked is not None
    assert not marked.cancel_requested
    assert await responses.request_cancel("resp_9") is None


async def test_latest_is_the_session_s_newest(responses: Responses) -> None:
    await responses.put(record(1))
    await responses.put(record(2))
    await responses.put(record(3, session="other"))
    await responses.put(record(1, status="completed"))  # an update keeps its place
    latest = await responses.latest(SessionKey("api", "s"))
    assert latest is not None
    assert latest.id == "resp_2"
    assert await responses.latest(SessionKey("api", "none")) is None


async def test_steps_are_kept_in_order_and_never_renumbered(responses: Responses) -> None:
    steps = [
        TextDelta("a"),
        ToolProgress("c1", "search", "started", "q"),
        ClientCall(ToolCall("c2", "f", "{}")),
        CallPiece(ToolCallPiece(1, "c3", "g", '{"é":')),
        Ended("completed", Usage(1, 2)),
    ]
    await responses.put(record(1))
    await responses.append("resp_1", 0, steps[:2])
    await responses.append("resp_1", 1, [TextDelta("ignored"), *steps[2:4]])
    await responses.append("resp_1", 4, steps[4:])
    assert await responses.read("resp_1") == tuple(steps)
    assert await responses.read("resp_1", after=2) == tuple(steps[3:])
    assert await responses.read("resp_1", after=4) == ()


async def test_delete_forgets_the_record_and_its_steps(responses: Responses) -> None:
    await responses.put(record(1))
    await responses.append("resp_1", 0, [TextDelta("a")])
    assert await responses.delete("resp_1")
    assert await responses.get("resp_1") is None
    assert await responses.read("resp_1") == ()
    assert not await responses.delete("resp_1")


async def test_another_connection_reads_what_one_wrote(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    async with SqliteResponseStore(path) as one, SqliteResponseStore(path) as two:
        await one.put(record(1))
        await one.append("resp_1", 0, [TextDelta("x")])
        assert await two.get("resp_1") == record(1)
        assert await two.read("resp_1") == (TextDelta("x"),)
        await two.request_cancel("resp_1")
        seen = await one.get("resp_1")
        assert seen is not None
        assert seen.cancel_requested


async def test_conversation_records_by_session_and_channel(records: Records) -> None:
    one = ConversationRecord(SessionKey("api", "conv_1"), 5.0, (("k", "v"), ("ü", "x")))
    two = ConversationRecord(SessionKey("api", "conv_2"), 6.0)
    elsewhere = ConversationRecord(SessionKey("apix", "conv_3"), 7.0)
    for r in (one, two, elsewhere):
        await records.put(r)
    assert await records.get(one.session) == one
    assert set(await records.records("api")) == {one, two}
    await records.put(attrs.evolve(one, metadata=()))
    assert await records.get(one.session) == attrs.evolve(one, metadata=())
    assert await records.delete(one.session)
    assert await records.get(one.session) is None
    assert not await records.delete(one.session)


async def test_session_summaries_list_a_channel_newest_first(sessions: Sessions) -> None:
    turn = TurnRecord((Message.user("u"), Message.assistant("a")))
    for name in ("a", "b", "a"):
        await sessions.commit(SessionKey("api", name), turn)
    await sessions.commit(SessionKey("apix", "c"), turn)
    summaries = await sessions.summaries("api")
    assert [(s.session.session_id, s.turns) for s in summaries] == [("a", 2), ("b", 1)]
    assert summaries[0].created_at <= summaries[0].updated_at


async def test_paused_calls_find_the_latest_session_of_the_caller_s_channel(
    responses: Responses,
) -> None:
    a, b, other = SessionKey("api", "a"), SessionKey("api", "b"), SessionKey("api/bob", "a")
    await responses.note(a, ["call_1", "call_2"])
    await responses.note(other, ["call_2"])
    assert await responses.find(["call_9", "call_2"], "api") == a
    assert await responses.find(["call_2"], "api/bob") == other
    await responses.note(b, ["call_1"])  # the same id from another session, later
    assert await responses.find(["call_1"], "api") == b
    await responses.note(b, [])  # answered: b waits for nothing now
    assert await responses.find(["call_1"], "api") == a
    await responses.note(a, ["call_3"])  # a paused again: its earlier calls are gone
    assert await responses.find(["call_1", "call_2"], "api") is None
    assert await responses.find([], "api") is None


async def test_a_run_nobody_vouches_for_is_interrupted_once(responses: Responses) -> None:
    await responses.put(record(1, alive_until=100.0))
    await responses.keep_alive("resp_1", 200.0)
    await responses.put(record(1, status="in_progress", alive_until=50.0))  # not moved back
    stored = await responses.get("resp_1")
    assert stored is not None
    assert (stored.status, stored.alive_until) == ("in_progress", 200.0)
    failed = record(1, status="failed", error=ResponseError("server_error", "interrupted"))
    assert not await responses.interrupt(failed, now=150.0)  # still vouched for
    assert await responses.interrupt(failed, now=250.0)
    assert not await responses.interrupt(failed, now=250.0)  # it has ended already
    await responses.keep_alive("resp_1", 900.0)  # an ended run is not renewed
    stored = await responses.get("resp_1")
    assert stored is not None
    assert (stored.status, stored.error, stored.alive_until) == ("failed", failed.error, 200.0)


TEMPORARY = "api:temporary:"


async def test_forget_records_takes_old_responses_steps_and_paused_calls(
    responses: Responses,
) -> None:
    a, b = SessionKey("api", "temporary:a"), SessionKey("api", "temporary:b")
    for kept in (
        record(1, "temporary:a", status="completed"),
        record(2, "temporary:a", status="failed"),
        record(3, "temporary:a", alive_until=1600.0),  # still vouched for at the cut-off
        record(4, "temporary:a", alive_until=1200.0),  # its run was lost before it
        record(5, "temporary:a", status="completed", created_at=2000.0),  # made since
        record(6, "temporary:b", status="completed"),
        record(7, "kept", status="completed"),
    ):
        await responses.put(kept)
    await responses.append("resp_1", 0, [TextDelta("a")])
    await responses.note(a, ["call_1"])
    await responses.note(b, ["call_2"])
    assert await responses.sessions_with_records(TEMPORARY, 1500.0) == (a, b)

    assert await responses.forget_records([a], 1500.0) == 3

    assert [await responses.get(f"resp_{n}") is None for n in range(1, 8)] == [
        True, True, False, True, False, False, False,
    ]  # fmt: skip
    assert await responses.read("resp_1") == ()
    assert await responses.find(["call_1", "call_2"], "api") == b
    assert await responses.sessions_with_records(TEMPORARY, 1500.0) == (b,)
    assert await responses.forget_records([b], 1500.0) == 1
    assert await responses.sessions_with_records(TEMPORARY, 1500.0) == ()


async def test_forget_records_takes_old_conversation_records(records: Records) -> None:
    a, b, c = (SessionKey("api", f"temporary:{n}") for n in "abc")
    for session, created_at in ((a, 5.0), (b, 6.0), (c, 50.0), (SessionKey("api", "x"), 1.0)):
        await records.put(ConversationRecord(session, created_at))
    assert await records.sessions_with_records(TEMPORARY, 10.0) == (a, b)
    assert await records.forget_records([a, c], 10.0) == 1
    assert await records.get(a) is None
    assert await records.get(c) is not None
    assert await records.sessions_with_records(TEMPORARY, 10.0) == (b,)


async def test_a_sweep_never_makes_the_file_of_a_store_nobody_used(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    session = SessionKey("api", "temporary:a")
    for store in (SqliteResponseStore(path), SqliteConversationStore(path)):
        assert await store.forget_records([session], 10.0) == 0
        assert await store.sessions_with_records(TEMPORARY, 10.0) == ()
        await store.close()
    assert not path.exists()


async def test_a_schema_1_file_gains_run_liveness(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(
            "CREATE TABLE responses (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL "
            "UNIQUE, session_key TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL, "
            "cancel_requested INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL); "
            "PRAGMA user_version=1;"
        )
    async with SqliteResponseStore(path) as store:
        await store.put(record(1))
        await store.keep_alive("resp_1", 5.0)
        stored = await store.get("resp_1")
        assert stored is not None
        assert stored.alive_until == 5.0
