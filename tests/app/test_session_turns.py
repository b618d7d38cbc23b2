"""Turns of one session across processes: leases in ChatService, and api.busy."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.app.sessions import SessionTurns
from nanobot_api.domain.errors import SessionBusy
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.testing import Harness

A = SessionKey("api", "a")


async def test_reject_refuses_a_second_turn_of_a_busy_session_at_once(tmp_path: Path) -> None:
    async with SqliteSessionStore(tmp_path / "s.sqlite3") as store:
        turns = SessionTurns(store, busy="reject", lease_s=5)
        async with turns.hold(A) as lease:
            assert lease is not None
            with pytest.raises(SessionBusy):
                async with turns.hold(A):
                    pass
            # Another process on the same file is refused as well.
            other = SessionTurns(
                SqliteSessionStore(tmp_path / "s.sqlite3"), busy="reject", lease_s=5
            )
            with pytest.raises(SessionBusy):
                async with other.hold(A):
                    pass
        async with turns.hold(A):
            pass  # free again once the turn ended


async def test_a_held_lease_is_renewed_while_the_turn_runs(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    async with SqliteSessionStore(path, lease_s=0.3) as store:
        turns = SessionTurns(store, lease_s=0.3)
        async with turns.hold(A) as lease:
            await anyio.sleep(0.8)  # several lease periods
            assert lease is not None
            other = SqliteSessionStore(path, lease_s=0.3)
            with pytest.raises(SessionBusy):
                await other.acquire(A, wait=False)
            await other.close()


async def test_busy_reject_answers_409_session_busy_with_retry_after() -> None:
    gate = anyio.Event()

    async def slow(text: str) -> str:
        await gate.wait()
        return "done"

    async with Harness(slow, busy="reject") as h:
        async with anyio.create_task_group() as tg:

            async def first() -> None:
                assert (await h.chat("first", session_id="s1")).ok

            tg.start_soon(first)
            await anyio.sleep(0.2)
            refused = await h.chat("second", session_id="s1")
            gate.set()
        assert refused.status == 409
        assert refused.error is not None
        assert refused.error.type == "session_busy"
        assert refused.headers.get("Retry-After") == "1"
        assert (await h.chat("third", session_id="s1")).ok
