"""The SessionLeases contract, on SQLite and PostgreSQL: two stores on one backend play
two processes (every lease state lives in the store, none in the object)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from nanobot_api.adapters.storage.postgres import PostgresSessionStore
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.errors import LeaseLost, SessionBusy
from nanobot_api.domain.sessions import Lease, SessionKey
from nanobot_api.testing.postgres import scratch_database

A = SessionKey("api", "a")
B = SessionKey("api", "b")
LEASE_S = 0.6
Store = SqliteSessionStore | PostgresSessionStore


def turn(text: str) -> TurnRecord:
    return TurnRecord((Message.user(text), Message.assistant(f"answer to {text}")))


@pytest.fixture(name="stores", params=["sqlite", "postgres"])
async def _stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Store, Store]]:
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield (
                PostgresSessionStore(db, lease_s=LEASE_S),
                PostgresSessionStore(db, lease_s=LEASE_S),
            )
        return
    path = tmp_path / "sessions.sqlite3"
    async with (
        SqliteSessionStore(path, lease_s=LEASE_S) as one,
        SqliteSessionStore(path, lease_s=LEASE_S) as two,
    ):
        yield one, two


async def test_a_free_session_is_taken_at_once_with_a_growing_token(
    stores: tuple[Store, Store],
) -> None:
    one, two = stores
    first = await one.acquire(A)
    await one.release(first)
    second = await two.acquire(A)
    assert second.token > first.token
    other = await two.acquire(B)  # sessions do not wait for each other
    await two.release(other)
    await two.release(second)


async def test_waiting_turns_take_the_session_in_the_order_they_came(
    stores: tuple[Store, Store],
) -> None:
    one, two = stores
    holder = await one.acquire(A)
    order: list[str] = []

    async def turn_of(name: str, store: Store) -> None:
        lease = await store.acquire(A)
        order.append(name)
        await anyio.sleep(0.02)
        await store.release(lease)

    async with anyio.create_task_group() as tg:
        for n, store in enumerate((two, one, two, one)):
            tg.start_soon(turn_of, f"t{n}", store)
            await anyio.sleep(0.05)  # each takes its place before the next
        await one.release(holder)
    assert order == ["t0", "t1", "t2", "t3"]


async def test_without_waiting_a_busy_session_is_refused(stores: tuple[Store, Store]) -> None:
    one, two = stores
    holder = await one.acquire(A)
    with pytest.raises(SessionBusy) as refused:
        await two.acquire(A, wait=False)
    assert refused.value.retry_after_s > 0
    await one.release(holder)
    # The refused turn left no place behind: the session is free at once.
    with anyio.fail_after(1):
        await one.release(await two.acquire(A, wait=False))


async def test_a_stale_holder_can_never_commit(stores: tuple[Store, Store]) -> None:
    """A process paused past its lease comes back: its commit is refused and writes
    nothing, and the new holder's commit lands."""
    one, two = stores
    stale = await one.acquire(A)
    await anyio.sleep(LEASE_S + 0.2)
    with anyio.fail_after(2):
        fresh = await two.acquire(A)
    with pytest.raises(LeaseLost):
        await one.commit(A, turn("late"), lease=stale)
    with pytest.raises(LeaseLost):
        await one.renew(stale)
    await two.commit(A, turn("on time"), lease=fresh)
    await two.release(fresh)
    assert [r.user_text for r in await one.history(A)] == ["on time"]


async def test_a_holder_that_renews_keeps_the_session(stores: tuple[Store, Store]) -> None:
    one, two = stores
    lease = await one.acquire(A)
    for _ in range(4):
        await anyio.sleep(LEASE_S / 3)
        await one.renew(lease)
        with pytest.raises(SessionBusy):
            await two.acquire(A, wait=False)
    await one.commit(A, turn("kept"), lease=lease)
    await one.release(lease)
    assert [r.user_text for r in await two.history(A)] == ["kept"]


async def test_a_holder_that_vanished_frees_the_session_within_the_lease(
    stores: tuple[Store, Store],
) -> None:
    one, two = stores
    await one.acquire(A)  # never released, never renewed: its process died
    began = anyio.current_time()
    with anyio.fail_after(LEASE_S + 1.0):
        lease = await two.acquire(A)
    assert anyio.current_time() - began < LEASE_S + 0.5
    await two.release(lease)


async def test_a_cancelled_wait_gives_its_place_up(stores: tuple[Store, Store]) -> None:
    one, two = stores
    holder = await one.acquire(A)
    with anyio.move_on_after(0.1):
        await two.acquire(A)
    await one.release(holder)
    with anyio.fail_after(0.5):
        await one.release(await one.acquire(A, wait=False))


async def test_a_commit_without_a_lease_still_lands(stores: tuple[Store, Store]) -> None:
    """Fencing is asked for by passing a lease; stores used without leases still work."""
    one, _ = stores
    await one.commit(A, turn("plain"))
    assert [r.user_text for r in await one.history(A)] == ["plain"]


def test_a_lease_names_its_session() -> None:
    assert Lease(A, 3, 7).key == A
