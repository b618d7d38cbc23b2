"""The SessionStore contract, run against the in-memory fake, SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.adapters.storage.postgres import PostgresSessionStore
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.domain.branches import NO_IDS, MessageIds, StoredTurn
from nanobot_api.domain.conversation import Message, ToolCall, TurnRecord
from nanobot_api.domain.ports import SessionStore
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import scratch_database

A = SessionKey("api", "a")
B = SessionKey("api", "b")


def turn(text: str, *, tools: int = 0) -> TurnRecord:
    """A turn of ``2 + 2 * tools`` messages: user, [call, result]*, answer."""
    messages = [Message.user(text)]
    for i in range(tools):
        call = ToolCall(f"call_{i}", "lookup", f'{{"q": "{text}-{i}"}}')
        messages += [Message.assistant(None, (call,)), Message.tool_result(call.id, f"r{i}")]
    messages.append(Message.assistant(f"answer to {text}"))
    return TurnRecord(tuple(messages))


@pytest.fixture(name="store", params=["memory", "sqlite", "postgres"])
async def _store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    if request.param == "memory":
        yield InMemorySessionStore()
        return
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield PostgresSessionStore(db)
        return
    async with SqliteSessionStore(tmp_path / "sessions.sqlite3") as store:
        yield store


async def test_bounded_reads_hand_out_the_same_turn_objects_again(store: SessionStore) -> None:
    """The identity contract of SessionStore.history, which the request encoder's
    cache of encoded windows relies on for its speed."""
    key = SessionKey("api", "same")
    await store.commit(key, turn("one"))
    await store.history(key, 6)  # a store may learn its file's state on the first read
    first = await store.history(key, 6)
    await store.commit(key, turn("two"))
    second = await store.history(key, 6)
    third = await store.history(key, 6)
    assert second[0] is first[0]
    assert all(a is b for a, b in zip(second, third, strict=True))
    await store.commit(key, turn("three", tools=1))
    fourth = await store.history(key, 6)  # "one" falls out of the bound (same bound)
    assert [t.user_text for t in fourth] == ["two", "three"]
    assert fourth[0] is second[1]


async def test_bounded_reads_after_branch_commits_see_each_commit(store: SessionStore) -> None:
    """A branch commit that only appends (a front end resending the conversation), one
    that changes which turns are active, and one importing turns: each is seen by the
    next bounded read, even right after a read that a store may have kept."""
    key = SessionKey("api", "branches")
    await store.commit(key, turn("one"))
    for _ in range(2):
        await store.history(key, 6)
    ((first, _),) = [(t.no, t) for t in await store.turns(key)]
    await store.commit_branch(key, [first], [], turn("two"), NO_IDS)
    assert [t.user_text for t in await store.history(key, 6)] == ["one", "two"]
    await store.commit_branch(key, [], [], turn("one edited"), NO_IDS)
    assert [t.user_text for t in await store.history(key, 6)] == ["one edited"]
    await store.commit_branch(key, [], [turn("a")], turn("b"), NO_IDS)
    assert [t.user_text for t in await store.history(key, 6)] == ["a", "b"]


async def test_a_new_session_is_empty(store: SessionStore) -> None:
    assert await store.history(A) == ()
    assert await store.sessions() == {}


async def test_turns_come_back_in_order_with_every_message(store: SessionStore) -> None:
    records = [turn("one"), turn("two", tools=2), turn("three ✓ \u2028 \x00")]
    for record in records:
        await store.commit(A, record)
    assert await store.history(A) == tuple(records)


async def test_sessions_never_see_each_other(store: SessionStore) -> None:
    await store.commit(A, turn("for a"))
    await store.commit(B, turn("for b"))
    assert [r.user_text for r in await store.history(A)] == ["for a"]
    assert [r.user_text for r in await store.history(B)] == ["for b"]
    assert await store.sessions() == {A: 1, B: 1}


async def test_keys_that_differ_only_by_channel_are_different_sessions(store: SessionStore) -> None:
    await store.commit(SessionKey("api", "x"), turn("api"))
    await store.commit(SessionKey("telegram", "x"), turn("tg"))
    assert [r.user_text for r in await store.history(SessionKey("api", "x"))] == ["api"]


async def test_max_messages_keeps_only_recent_whole_turns(store: SessionStore) -> None:
    await store.commit(A, turn("old", tools=1))  # 4 messages
    await store.commit(A, turn("mid", tools=2))  # 6 messages
    await store.commit(A, turn("new"))  # 2 messages
    assert [r.user_text for r in await store.history(A, 8)] == ["mid", "new"]
    assert [r.user_text for r in await store.history(A, 7)] == ["new"]
    assert [r.user_text for r in await store.history(A, 12)] == ["old", "mid", "new"]
    assert await store.history(A, 1) == ()


async def test_turns_are_numbered_and_each_follows_the_one_before(store: SessionStore) -> None:
    assert await store.turns(A) == ()
    await store.commit(A, turn("1"))
    await store.commit(A, turn("2", tools=1))
    await store.commit(B, turn("b"))
    assert await store.turns(A) == (
        StoredTurn(1, None, turn("1")),
        StoredTurn(2, 1, turn("2", tools=1)),
    )


async def test_last_turn_counts_and_returns_the_latest_of_the_active_branch(
    store: SessionStore,
) -> None:
    assert await store.last_turn(A) == (0, None)
    await store.commit(A, turn("1"))
    await store.commit(A, turn("2", tools=1))
    await store.commit(B, turn("b"))
    assert await store.last_turn(A) == (2, turn("2", tools=1))
    await store.commit_branch(A, [1], [], turn("2 again"), NO_IDS)
    assert await store.last_turn(A) == (2, turn("2 again"))


async def test_a_branch_commit_supersedes_the_rest_and_switching_back_restores_it(
    store: SessionStore,
) -> None:
    """Regenerate turn 2, edit turn 1, then switch back to the first branch."""
    ids = MessageIds("u", "m", "p")
    for text in ("1", "2"):
        await store.commit(A, turn(text))
    await store.commit_branch(A, [1], [], turn("2 again"), ids)
    assert [r.user_text for r in await store.history(A)] == ["1", "2 again"]
    await store.commit_branch(A, [], [], turn("1 edited"), NO_IDS)
    assert [r.user_text for r in await store.history(A)] == ["1 edited"]
    await store.commit_branch(A, [1, 3], [turn("only in the request")], turn("3"), NO_IDS)
    assert [r.user_text for r in await store.history(A)] == [
        "1",
        "2 again",
        "only in the request",
        "3",
    ]
    stored = await store.turns(A)
    assert [(t.no, t.parent, t.superseded) for t in stored] == [
        (1, None, False),
        (2, 1, True),
        (3, 1, False),
        (4, None, True),
        (5, 3, False),
        (6, 5, False),
    ]
    assert stored[2].ids == ids
    assert stored[5].ids == NO_IDS
    assert await store.sessions() == {A: 4}
    # A plain commit follows the active branch; clearing counts every stored turn.
    await store.commit(A, turn("4"))
    assert (await store.turns(A))[-1] == StoredTurn(7, 6, turn("4"))
    assert await store.clear(A) == 7


async def test_clear_forgets_one_session_and_counts_its_turns(store: SessionStore) -> None:
    await store.commit(A, turn("1"))
    await store.commit(A, turn("2"))
    await store.commit(B, turn("3"))
    assert await store.clear(A) == 2
    assert await store.clear(A) == 0
    assert await store.history(A) == ()
    assert await store.sessions() == {B: 1}
    await store.commit(A, turn("again"))
    assert [r.user_text for r in await store.history(A)] == ["again"]


async def test_idle_sessions_under_a_prefix_are_forgotten_whole(store: SessionStore) -> None:
    temporary = [SessionKey("api", "temporary:a"), SessionKey("api", "temporary:b")]
    for key in temporary:
        await store.commit(key, turn("1"))
        await store.commit_branch(key, [], [], turn("1 edited"), NO_IDS)
    await store.commit(A, turn("kept"))
    assert await store.forget_idle("api:temporary:", time.time() - 60) == ()
    assert await store.forget_idle("api:temporary:", time.time() + 1) == tuple(temporary)
    assert await store.sessions() == {A: 1}
    assert await store.turns(temporary[0]) == ()
    assert await store.forget_idle("api:", time.time() + 1) == (A,)


async def test_concurrent_commits_to_many_sessions_all_land(store: SessionStore) -> None:
    keys = [SessionKey("api", f"s{i}") for i in range(20)]
    async with anyio.create_task_group() as tg:
        for key in keys:
            for n in range(5):
                tg.start_soon(store.commit, key, turn(f"{key.session_id}-{n}"))
    sessions = await store.sessions()
    assert sessions == dict.fromkeys(keys, 5)
    for key in keys:
        assert {r.user_text for r in await store.history(key)} == {
            f"{key.session_id}-{n}" for n in range(5)
        }


# --- SQLite only ----------------------------------------------------------------------


async def test_committed_turns_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "sessions.sqlite3"
    async with SqliteSessionStore(path) as store:
        await store.commit(A, turn("kept", tools=1))
    async with SqliteSessionStore(path) as store:
        assert await store.history(A) == (turn("kept", tools=1),)


async def test_a_file_of_the_first_schema_keeps_its_turns_as_one_branch(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE turns (session_key TEXT NOT NULL, turn_no INTEGER NOT NULL, "
            "n_messages INTEGER NOT NULL, messages TEXT NOT NULL, created_at REAL NOT NULL, "
            "PRIMARY KEY (session_key, turn_no)) WITHOUT ROWID"
        )
        for no, text in enumerate(["one", "two"], start=1):
            payload = f'[{{"role": "user", "content": "{text}"}}, '
            payload += f'{{"role": "assistant", "content": "answer to {text}"}}]'
            conn.execute("INSERT INTO turns VALUES ('api:a', ?, 2, ?, 0)", (no, payload))
        conn.execute("PRAGMA user_version=1")
    conn.close()
    async with SqliteSessionStore(path) as store:
        assert await store.history(A) == (turn("one"), turn("two"))
        assert [(t.no, t.parent) for t in await store.turns(A)] == [(1, None), (2, 1)]
        await store.commit(A, turn("three"))
        assert (await store.turns(A))[-1].parent == 2


async def test_the_file_is_in_wal_mode_with_an_index_on_session_and_turn(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    async with SqliteSessionStore(path):
        pass
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT messages FROM turns WHERE session_key = ? "
            "ORDER BY turn_no DESC",
            ("api:a",),
        ).fetchall()
    assert "USING PRIMARY KEY" in str(plan)
    assert "TEMP B-TREE" not in str(plan)


async def test_opens_on_first_use_and_creates_its_folder(tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "new" / "sessions.sqlite3")
    await store.commit(A, turn("lazy"))
    assert [r.user_text for r in await store.history(A)] == ["lazy"]
    await store.close()
    assert store.path.exists()


async def test_a_clear_by_another_process_is_seen_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    async with SqliteSessionStore(path) as serving:
        await serving.commit(A, turn("1"))
        await serving.commit(A, turn("2"))
        assert len(await serving.history(A, 100)) == 2
        assert len(await serving.history(A, 100)) == 2  # now from memory
        async with SqliteSessionStore(path) as cli:
            assert await cli.clear(A) == 2
        assert await serving.history(A, 100) == ()
        await serving.commit(A, turn("3"))
        assert [r.user_text for r in await serving.history(A, 100)] == ["3"]


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = await SqliteSessionStore(tmp_path / "s.sqlite3").open()
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.history(A)


_WRITER = """
import sys, anyio
from pathlib import Path
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing.postgres import scratch_database

async def main():
    store = SqliteSessionStore(Path(sys.argv[1]))
    for n in range(100000):
        key = SessionKey("api", f"s{n % 3}")
        await store.commit(key, TurnRecord((Message.user(str(n)), Message.assistant("x" * 500))))
        print(n, flush=True)

anyio.run(main)
"""


@pytest.mark.slow
async def test_kill_9_never_loses_a_commit_that_returned(tmp_path: Path) -> None:
    path = tmp_path / "sessions.sqlite3"
    async with await anyio.open_process(
        [sys.executable, "-c", _WRITER, str(path)], stderr=subprocess.DEVNULL
    ) as proc:
        assert proc.stdout is not None
        seen = b""
        while seen.count(b"\n") < 200:
            seen += await proc.stdout.receive()
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    acknowledged = {int(line) for line in seen.split(b"\n")[:-1]}
    async with SqliteSessionStore(path) as store:
        stored: set[int] = set()
        for key in [SessionKey("api", f"s{i}") for i in range(3)]:
            history = await store.history(key)
            assert all(len(r.messages) == 2 for r in history)
            stored |= {int(r.user_text) for r in history}
    assert acknowledged <= stored
    assert stored == set(range(len(stored))), "turns land in order, none skipped"


# --- stateful: commits, failed turns and restarts across sessions ----------------------

KEYS = [SessionKey("api", "a"), SessionKey("api", "b"), SessionKey("telegram", "a")]


class StoreMachine(RuleBasedStateMachine):
    """A model (dict of lists) against the SQLite file, with restarts between steps."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[SessionKey, list[TurnRecord]] = {}
        self.tmp = Path(tempfile.mkdtemp(prefix="nanobot-store-"))
        self.path = self.tmp / "sessions.sqlite3"
        self.store = anyio.run(SqliteSessionStore(self.path).open)
        self.counter = 0
        self.stored: dict[SessionKey, int] = {}  # turns stored, superseded included

    @rule(key=st.sampled_from(KEYS), tools=st.integers(0, 2))
    def commit(self, key: SessionKey, tools: int) -> None:
        self.counter += 1
        record = turn(f"{key}#{self.counter}", tools=tools)
        anyio.run(self.store.commit, key, record)
        self.model.setdefault(key, []).append(record)
        self.stored[key] = self.stored.get(key, 0) + 1

    @rule(key=st.sampled_from(KEYS), cut=st.integers(0, 3), imported=st.integers(0, 2))
    def follow_another_branch(self, key: SessionKey, cut: int, imported: int) -> None:
        """A regenerate or an edit: the branch's first turns, some only the request had."""
        self.counter += 1
        active = [t for t in anyio.run(self.store.turns, key) if not t.superseded]
        kept = active[: max(len(active) - cut, 0)]
        extra = [turn(f"{key}#{self.counter} shown {i}") for i in range(imported)]
        record = turn(f"{key}#{self.counter} again")
        anyio.run(
            self.store.commit_branch, key, [t.no for t in kept], extra, record, MessageIds("u")
        )
        self.model[key] = [t.record for t in kept] + extra + [record]
        self.stored[key] = self.stored.get(key, 0) + imported + 1

    @rule(key=st.sampled_from(KEYS))
    def failed_turn(self, key: SessionKey) -> None:
        """A turn that fails never reaches commit: the store must not change."""
        before = anyio.run(self.store.history, key)
        assert list(before) == self.model.get(key, [])

    @rule(key=st.sampled_from(KEYS))
    def cancelled_commit(self, key: SessionKey) -> None:
        """A commit cancelled before it starts leaves nothing behind."""
        self.counter += 1

        async def cancelled() -> None:
            with anyio.CancelScope() as scope:
                scope.cancel()
                await self.store.commit(key, turn(f"never {self.counter}"))

        anyio.run(cancelled)

    @rule(key=st.sampled_from(KEYS), clear=st.booleans())
    def another_process_writes(self, key: SessionKey, clear: bool) -> None:
        """`nanobot sessions clear` (or a second server) while this store keeps serving."""
        self.counter += 1
        record = turn(f"{key}#{self.counter} elsewhere")

        async def elsewhere() -> None:
            async with SqliteSessionStore(self.path) as other:
                if clear:
                    await other.clear(key)
                else:
                    await other.commit(key, record)

        anyio.run(elsewhere)
        if clear:
            self.model.pop(key, None)
            self.stored.pop(key, None)
        else:
            self.model.setdefault(key, []).append(record)
            self.stored[key] = self.stored.get(key, 0) + 1

    @rule(key=st.sampled_from(KEYS))
    def bounded_read_twice(self, key: SessionKey) -> None:
        """The second read may come from memory; it must still be the truth."""
        for _ in range(2):
            got = list(anyio.run(self.store.history, key, 6))
            expected = self.model.get(key, [])
            assert got == expected[len(expected) - len(got) :]

    @rule()
    def restart(self) -> None:
        anyio.run(self.store.close)
        self.store = anyio.run(SqliteSessionStore(self.path).open)

    @precondition(lambda self: bool(self.model))
    @rule(key=st.sampled_from(KEYS))
    def clear(self, key: SessionKey) -> None:
        removed = anyio.run(self.store.clear, key)
        self.model.pop(key, None)
        assert removed == self.stored.pop(key, 0)

    @rule(key=st.sampled_from(KEYS), limit=st.integers(0, 12))
    def bounded(self, key: SessionKey, limit: int) -> None:
        got = anyio.run(self.store.history, key, limit)
        kept = list(got)
        assert sum(len(r.messages) for r in kept) <= limit
        expected = self.model.get(key, [])
        assert kept == expected[len(expected) - len(kept) :]
        if len(kept) < len(expected):
            assert sum(len(r.messages) for r in expected[len(expected) - len(kept) - 1 :]) > limit

    @invariant()
    def every_committed_turn_is_there_and_only_in_its_session(self) -> None:
        for key in KEYS:
            assert list(anyio.run(self.store.history, key)) == self.model.get(key, [])
        counts = anyio.run(self.store.sessions)
        assert counts == {k: len(v) for k, v in self.model.items() if v}

    def teardown(self) -> None:
        anyio.run(self.store.close)
        shutil.rmtree(self.tmp, ignore_errors=True)


StoreMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
test_store_machine = StoreMachine.TestCase


async def test_a_paused_turn_keeps_its_pause_and_its_calls(store: SessionStore) -> None:
    """A turn waiting for the client's tool results reads back paused, with its calls."""
    key = SessionKey("api", "paused")
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}')
    paused = TurnRecord((Message.user("weather?"), Message.assistant(None, (call,))), 1234.5)
    await store.commit(key, paused)
    (back,) = await store.history(key)
    assert (back.messages, back.paused_at) == (paused.messages, 1234.5)
    _, last = await store.last_turn(key)
    assert last is not None
    assert last.paused_at == 1234.5
