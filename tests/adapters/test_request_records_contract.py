"""The IdempotencyStore and LimitCounters contract, on the fake, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from nanobot_api.adapters.storage.postgres_requests import PostgresRequestRecords
from nanobot_api.adapters.storage.sqlite_requests import SqliteRequestRecords
from nanobot_api.domain.errors import IdempotencyKeyReused
from nanobot_api.domain.idempotency import Claimed, Running, StoredAnswer
from nanobot_api.testing.postgres import scratch_database
from tests.fakes import InMemoryRequestRecords

Records = SqliteRequestRecords | InMemoryRequestRecords | PostgresRequestRecords
ANSWER = StoredAnswer(200, "application/json", b'{"id": "chatcmpl-1"}', (("x-session-id", "s1"),))


@pytest.fixture(name="records", params=["memory", "sqlite", "postgres"])
async def _records(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Records]:
    if request.param == "memory":
        yield InMemoryRequestRecords()
        return
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield PostgresRequestRecords(db)
        return
    async with SqliteRequestRecords(tmp_path / "requests.sqlite3") as records:
        yield records


async def claim(records: Records, key: str = "k", fp: str = "body-1", now: float = 0.0) -> object:
    return await records.claim("alice", key, fp, now=now, lease_s=10.0, ttl_s=100.0)


async def test_the_first_claims_a_repeat_waits_then_gets_the_answer(records: Records) -> None:
    assert await claim(records) == Claimed()
    assert await claim(records, now=1.0) == Running()
    await records.finish("alice", "k", ANSWER)
    assert await claim(records, now=2.0) == ANSWER


async def test_another_body_under_the_same_key_is_refused(records: Records) -> None:
    await claim(records)
    with pytest.raises(IdempotencyKeyReused):
        await claim(records, fp="body-2", now=1.0)


async def test_an_abandoned_claim_lets_the_retry_run_and_a_lost_lease_is_taken_over(
    records: Records,
) -> None:
    await claim(records)
    await records.abandon("alice", "k")
    assert await claim(records, now=1.0) == Claimed()
    assert await claim(records, now=12.0) == Claimed()  # the holder's lease ran out


async def test_a_renewed_claim_holds_past_its_first_lease_until_answered(
    records: Records,
) -> None:
    await claim(records)  # held until 10.0
    await records.renew("alice", "k", 25.0)
    assert await claim(records, now=20.0) == Running()
    assert await claim(records, now=26.0) == Claimed()  # the renewals stopped: taken over
    await records.finish("alice", "k", ANSWER)
    await records.renew("alice", "k", 99.0)  # an answered claim has nothing to renew
    assert await claim(records, now=30.0) == ANSWER


async def test_keys_are_per_scope_and_forgotten_after_their_ttl(records: Records) -> None:
    await claim(records)
    await records.finish("alice", "k", ANSWER)
    assert await records.claim("bob", "k", "other", now=1.0, lease_s=10, ttl_s=100) == Claimed()
    assert await claim(records, fp="body-2", now=101.0) == Claimed()


async def test_counts_grow_within_a_window_and_restart_in_the_next(records: Records) -> None:
    assert [await records.add("rpm:a", 60.0) for _ in range(3)] == [1, 2, 3]
    assert await records.count("rpm:a", 60.0) == 3
    assert await records.count("rpm:b", 60.0) == 0
    assert await records.add("rpm:a", 120.0) == 1
    assert await records.count("rpm:a", 60.0) == 0
    # A late event of the old window (a replica whose clock is behind) counts in the
    # newer one rather than sending the bucket back.
    assert await records.add("rpm:a", 60.0) == 2
    assert await records.count("rpm:a", 120.0) == 2


async def test_slots_are_limited_freed_and_expire(records: Records) -> None:
    take = records.take_slot
    assert await take("turns", "t1", 2, now=0.0, lease_s=5.0)
    assert await take("turns", "t2", 2, now=0.0, lease_s=5.0)
    assert not await take("turns", "t3", 2, now=1.0, lease_s=5.0)
    await records.free_slot("turns", "t1")
    assert await take("turns", "t3", 2, now=1.0, lease_s=5.0)
    assert await take("turns", "t4", 2, now=6.0, lease_s=5.0)  # t2's lease ran out


async def test_a_holder_renews_its_slot_by_taking_it_again(records: Records) -> None:
    take = records.take_slot
    assert await take("turns", "t1", 1, now=0.0, lease_s=5.0)
    assert await take("turns", "t1", 1, now=4.0, lease_s=5.0)  # full, but it is its own
    assert not await take("turns", "t2", 1, now=8.0, lease_s=5.0)  # renewed until 9.0
    assert await take("turns", "t2", 1, now=9.5, lease_s=5.0)


async def test_one_key_claimed_at_once_from_many_tasks_is_claimed_once(records: Records) -> None:
    found: list[object] = []

    async def one() -> None:
        found.append(await claim(records))

    async with anyio.create_task_group() as tg:
        for _ in range(8):
            tg.start_soon(one)
    assert sorted(map(repr, found)) == sorted([repr(Claimed())] + [repr(Running())] * 7)


async def test_slots_taken_at_once_never_exceed_the_limit(records: Records) -> None:
    taken: list[bool] = []

    async def one(n: int) -> None:
        taken.append(await records.take_slot("turns", f"t{n}", 3, now=0.0, lease_s=5.0))

    async with anyio.create_task_group() as tg:
        for n in range(10):
            tg.start_soon(one, n)
    assert taken.count(True) == 3
