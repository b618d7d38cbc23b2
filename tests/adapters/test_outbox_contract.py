"""The Outbox and OutboxAdmin ports' contract, against the fake, SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.domain.errors import InvalidRequest, NotFound, RetryLater
from nanobot_api.domain.outbox import (
    OutboundMessage,
    OutboxEvent,
    OutboxTally,
    RetryPolicy,
    claimed,
    delivered,
    failed_attempt,
)
from nanobot_api.testing.postgres import scratch_database
from tests.fakes import InMemoryOutbox

SqliteOrFake = SqliteOutbox | InMemoryOutbox | PostgresOutbox


@pytest.fixture(name="outbox", params=["memory", "sqlite", "postgres"])
async def _outbox(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqliteOrFake]:
    if request.param == "memory":
        yield InMemoryOutbox()
        return
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield PostgresOutbox(db)
        return
    async with SqliteOutbox(tmp_path / "outbox.sqlite3") as outbox:
        yield outbox


def event(n: int, *, now: float = 0.0, channel: str = "telegram") -> OutboxEvent:
    message = OutboundMessage(f"e{n}", channel, "42", f"text {n}", (f"/ws/f{n}.png",))
    return OutboxEvent.pending(message, now)


async def test_enqueued_events_are_listed_oldest_first_and_by_status(outbox: SqliteOrFake) -> None:
    await outbox.enqueue(event(1, now=1.0))
    await outbox.enqueue(OutboxEvent.queued(event(2).message, now=2.0))
    await outbox.enqueue(event(3, now=3.0))
    assert [e.id for e in await outbox.events()] == ["e1", "e2", "e3"]
    assert [e.id for e in await outbox.events("queued")] == ["e2"]
    assert [e.id for e in await outbox.events("pending")] == ["e1", "e3"]
    assert await outbox.events("failed") == ()
    assert (await outbox.events())[0] == event(1, now=1.0)


async def test_claim_takes_due_events_in_due_order_and_counts_an_attempt(
    outbox: SqliteOrFake,
) -> None:
    for n, due in ((1, 5.0), (2, 1.0), (3, 50.0), (4, 2.0)):
        await outbox.enqueue(event(n, now=due))
    claim = await outbox.claim_due(now=10.0, limit=10)
    assert [e.id for e in claim.events] == ["e2", "e4", "e1"]
    assert all(e.attempts == 1 for e in claim.events)
    assert claim.next_due_at == 50.0
    stored = {e.id: e.attempts for e in await outbox.events()}
    assert stored == {"e1": 1, "e2": 1, "e3": 0, "e4": 1}


async def test_claim_respects_limit_and_exclusions(outbox: SqliteOrFake) -> None:
    for n in range(5):
        await outbox.enqueue(event(n, now=float(n)))
    claim = await outbox.claim_due(now=10.0, limit=2, exclude={"e0"})
    assert [e.id for e in claim.events] == ["e1", "e2"]
    assert claim.next_due_at == 3.0  # more are due already: the caller loops at once
    empty = await outbox.claim_due(now=10.0, limit=0)
    assert empty.events == ()


async def test_claim_skips_everything_not_pending(outbox: SqliteOrFake) -> None:
    await outbox.enqueue(OutboxEvent.queued(event(1).message, now=0.0))
    done = event(2)
    await outbox.enqueue(done)
    await outbox.settle(delivered(done, now=1.0))
    claim = await outbox.claim_due(now=10.0, limit=10)
    assert claim.events == ()
    assert claim.next_due_at is None


async def test_settle_writes_the_new_state_and_reports_a_dropped_event(
    outbox: SqliteOrFake,
) -> None:
    await outbox.enqueue(event(1))
    (taken,) = (await outbox.claim_due(now=1.0, limit=1)).events
    after = failed_attempt(
        taken, "HTTP 500", retryable=True, now=1.0, policy=RetryPolicy(), random=lambda: 0.0
    )
    assert await outbox.settle(attrs.evolve(after, progress=2))
    (stored,) = await outbox.events()
    assert stored == attrs.evolve(after, progress=2)
    await outbox.drop("e1")
    assert not await outbox.settle(delivered(after, now=2.0))


async def test_retry_makes_an_event_due_now_and_drop_removes_it(outbox: SqliteOrFake) -> None:
    await outbox.enqueue(OutboxEvent.queued(event(1).message, now=0.0))
    again = await outbox.retry("e1", now=7.0)
    assert (again.status, again.next_attempt_at, again.attempts) == ("pending", 7.0, 0)
    assert (await outbox.events()) == (again,)
    taken = (await outbox.claim_due(now=8.0, limit=1)).events[0]
    await outbox.settle(delivered(taken, now=9.0))
    with pytest.raises(InvalidRequest, match="already delivered"):
        await outbox.retry("e1", now=10.0)
    again = await outbox.retry("e1", now=10.0, force=True)
    assert (again.status, again.attempts, again.retried_from) == ("pending", 1, 1)
    assert (await outbox.events()) == (again,)
    dropped = await outbox.drop("e1")
    assert dropped == again
    assert await outbox.events() == ()


async def test_an_event_being_delivered_is_not_retried_until_its_attempt_ends(
    outbox: SqliteOrFake,
) -> None:
    """A retry while a worker holds the event would let a second worker send it too:
    refused, forced or not, until the attempt settles or its claim runs out."""
    await outbox.enqueue(event(1, now=0.0))
    (taken,) = (await outbox.claim_due(now=1.0, limit=1)).events
    for force in (False, True):
        with pytest.raises(RetryLater, match="being delivered right now") as refused:
            await outbox.retry("e1", now=2.0, force=force)
        assert refused.value.retry_after_s > 0  # until the claim runs out
    assert await outbox.event("e1") == taken  # untouched, still claimed
    policy = RetryPolicy(max_attempts=5, base_s=100.0, max_s=100.0)
    await outbox.settle(
        failed_attempt(taken, "503", retryable=True, now=3.0, policy=policy, random=lambda: 0.0)
    )
    again = await outbox.retry("e1", now=4.0)  # settled: due now
    assert (again.status, again.next_attempt_at) == ("pending", 4.0)
    # The message tool's immediate send holds its event the same way.
    await outbox.enqueue(claimed(event(2, now=10.0), 10.0))
    with pytest.raises(RetryLater):
        await outbox.retry("e2", now=11.0)


async def test_the_files_still_to_be_sent_are_those_of_queued_and_pending_events(
    outbox: SqliteOrFake,
) -> None:
    assert await outbox.awaited_files() == frozenset()
    await outbox.enqueue(event(1))
    await outbox.enqueue(OutboxEvent.queued(event(2).message, now=0.0))
    for n in (3, 4):
        await outbox.enqueue(event(n))
    claim = await outbox.claim_due(now=1.0, limit=5, exclude=("e1", "e2"))
    done, gave_up = claim.events
    await outbox.settle(delivered(done, now=2.0))
    await outbox.settle(attrs.evolve(gave_up, status="failed", next_attempt_at=None))
    assert await outbox.awaited_files() == {"f1.png", "f2.png"}


async def test_each_attempt_is_on_record_through_claims_settles_and_retries(
    outbox: SqliteOrFake,
) -> None:
    await outbox.enqueue(event(1, now=0.0))
    policy = RetryPolicy(max_attempts=5, base_s=1.0, max_s=1.0)
    (taken,) = (await outbox.claim_due(now=1.0, limit=1, worker="a pid 1")).events
    # On record from the claim: a crash mid-attempt leaves it there, running.
    assert (await outbox.event("e1")).attempt_log == taken.attempt_log
    assert [(a.number, a.started_at, a.worker, a.outcome) for a in taken.attempt_log] == [
        (1, 1.0, "a pid 1", "running")
    ]
    error = "webhook: HTTP 500 \x1b[2J é"  # stored as written; escaped only when shown
    await outbox.settle(
        failed_attempt(taken, error, retryable=True, now=1.5, policy=policy, random=lambda: 0.0)
    )
    (taken,) = (await outbox.claim_due(now=5.0, limit=1, worker="b pid 2")).events
    await outbox.settle(delivered(taken, now=5.25, steps=2))
    first_two = (await outbox.event("e1")).attempt_log
    assert [(a.number, a.outcome, a.error, a.ended_at) for a in first_two] == [
        (1, "failed", error, 1.5),
        (2, "delivered", None, 5.25),
    ]
    again = await outbox.retry("e1", now=6.0, force=True)
    assert (again.attempt_log, again.progress) == (first_two, 0)  # sent again whole
    assert await outbox.event("e1") == again
    (taken,) = (await outbox.claim_due(now=7.0, limit=1)).events
    await outbox.settle(delivered(taken, now=7.5))
    (final,) = await outbox.events()
    assert final.attempt_log[:2] == first_two
    assert [(a.number, a.worker, a.outcome) for a in final.attempt_log[2:]] == [
        (3, None, "delivered")
    ]
    # The message tool stores its event with the attempt it is making on record.
    await outbox.enqueue(claimed(event(2, now=8.0), 8.0, "tool pid 3"))
    assert [(a.number, a.worker) for a in (await outbox.event("e2")).attempt_log] == [
        (1, "tool pid 3")
    ]


async def test_the_tally_counts_each_state_and_dates_the_oldest_waiting_event(
    outbox: SqliteOrFake,
) -> None:
    assert await outbox.tally() == OutboxTally()
    await outbox.enqueue(event(1, now=5.0))
    await outbox.enqueue(OutboxEvent.queued(event(2).message, now=3.0))
    await outbox.enqueue(event(3, now=1.0))
    await outbox.enqueue(event(4, now=0.5))
    for n, ends in ((4, "failed"), (3, "delivered")):
        (taken,) = (await outbox.claim_due(now=6.0, limit=1, exclude={"e1"})).events
        assert taken.id == f"e{n}"
        if ends == "delivered":
            await outbox.settle(delivered(taken, now=6.0))
        else:
            policy = RetryPolicy(max_attempts=1)
            lost = failed_attempt(
                taken, "HTTP 403", retryable=False, now=6.0, policy=policy, random=lambda: 0.0
            )
            await outbox.settle(lost)
    # The failed and delivered ones wait no more: the oldest waiting is queued e2.
    expected = OutboxTally(queued=1, pending=1, failed=1, delivered=1, oldest_waiting_at=3.0)
    assert await outbox.tally() == expected
    assert expected.waiting_age_s(10.0) == 7.0


async def test_an_unknown_id_is_not_found(outbox: SqliteOrFake) -> None:
    with pytest.raises(NotFound, match="nope"):
        await outbox.event("nope")
    with pytest.raises(NotFound, match="nope"):
        await outbox.retry("nope", now=0.0)
    with pytest.raises(NotFound, match="nope"):
        await outbox.drop("nope")


async def test_a_duplicate_id_is_refused(outbox: SqliteOrFake) -> None:
    await outbox.enqueue(event(1))
    with pytest.raises((ValueError, sqlite3.IntegrityError)):
        await outbox.enqueue(event(1))


# --- several processes on one store (SQLite file or PostgreSQL database) ---------------

Shared = SqliteOutbox | PostgresOutbox


@pytest.fixture(name="two_outboxes", params=["sqlite", "postgres"])
async def _two_outboxes(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Shared, Shared]]:
    """Two outboxes on one store, as two processes have: claims last 60 s."""
    if request.param == "postgres":
        async with scratch_database(request.getfixturevalue("shared_postgres_url")) as db:
            yield PostgresOutbox(db, claim_s=60), PostgresOutbox(db, claim_s=60)
        return
    path = tmp_path / "outbox.sqlite3"
    async with SqliteOutbox(path, claim_s=60) as one, SqliteOutbox(path, claim_s=60) as two:
        yield one, two


async def test_two_workers_never_claim_the_same_event(two_outboxes: tuple[Shared, Shared]) -> None:
    one, two = two_outboxes
    for n in range(6):
        await one.enqueue(event(n, now=float(n)))
    first = await one.claim_due(now=10.0, limit=4)
    second = await two.claim_due(now=10.0, limit=4)
    assert [e.id for e in first.events] == ["e0", "e1", "e2", "e3"]
    assert [e.id for e in second.events] == ["e4", "e5"]
    assert (await two.claim_due(now=10.0, limit=4)).events == ()


async def test_an_abandoned_claim_is_offered_again_once_it_runs_out(
    two_outboxes: tuple[Shared, Shared],
) -> None:
    one, two = two_outboxes
    await one.enqueue(event(1, now=0.0))
    assert [e.id for e in (await one.claim_due(now=1.0, limit=5)).events] == ["e1"]
    blocked = await two.claim_due(now=30.0, limit=5)
    assert blocked.events == ()
    assert blocked.next_due_at == 61.0  # when the claim runs out
    again = await two.claim_due(now=61.0, limit=5)
    assert [(e.id, e.attempts) for e in again.events] == [("e1", 2)]


async def test_a_settled_event_is_free_of_its_claim(two_outboxes: tuple[Shared, Shared]) -> None:
    one, two = two_outboxes
    await one.enqueue(event(1, now=0.0))
    (taken,) = (await one.claim_due(now=1.0, limit=5)).events
    policy = RetryPolicy(max_attempts=5, base_s=1.0, max_s=1.0)
    await one.settle(
        failed_attempt(taken, "503", retryable=True, now=1.0, policy=policy, random=lambda: 0.5)
    )
    assert [e.id for e in (await two.claim_due(now=5.0, limit=5)).events] == ["e1"]


async def test_an_event_stored_mid_delivery_belongs_to_its_sender(
    two_outboxes: tuple[Shared, Shared],
) -> None:
    """The message tool stores an event with its attempt counted and sends it at once:
    no other worker takes it while that attempt may still be running."""
    one, two = two_outboxes
    await one.enqueue(claimed(event(1, now=0.0), 0.0))
    assert (await two.claim_due(now=1.0, limit=5)).events == ()
    assert [e.id for e in (await two.claim_due(now=60.0, limit=5)).events] == ["e1"]


# --- SqliteOutbox only -------------------------------------------------------------------


async def test_events_and_claims_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "outbox.sqlite3"
    async with SqliteOutbox(path) as outbox:
        await outbox.enqueue(event(1))
        await outbox.claim_due(now=1.0, limit=1)
    async with SqliteOutbox(path) as outbox:
        (stored,) = await outbox.events()
    assert stored.attempts == 1
    assert stored.media == ("/ws/f1.png",)


async def test_a_closed_outbox_refuses_work(tmp_path: Path) -> None:
    outbox = await SqliteOutbox(tmp_path / "o.sqlite3").open()
    await outbox.close()
    await outbox.close()
    with pytest.raises(RuntimeError, match="closed"):
        await outbox.events()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await SqliteOutbox(path).open()


async def test_claims_use_the_due_index(tmp_path: Path) -> None:
    async with SqliteOutbox(tmp_path / "o.sqlite3") as outbox:
        await outbox.enqueue(event(1))
    with sqlite3.connect(tmp_path / "o.sqlite3") as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM outbox WHERE status = 'pending' "
            "ORDER BY next_attempt_at, rowid"
        ).fetchall()
    conn.close()
    assert "outbox_due" in str(plan)


# Schema 2, as nanobot-api wrote it before the record of attempts.
_SCHEMA_2 = """
CREATE TABLE outbox (
    id TEXT PRIMARY KEY, channel TEXT NOT NULL, chat_id TEXT NOT NULL, content TEXT NOT NULL,
    media TEXT NOT NULL, status TEXT NOT NULL, created_at REAL NOT NULL,
    attempts INTEGER NOT NULL, progress INTEGER NOT NULL, next_attempt_at REAL,
    last_error TEXT, delivered_at REAL, retried_from INTEGER NOT NULL DEFAULT 0,
    claimed_until REAL
);
CREATE INDEX outbox_due ON outbox (status, next_attempt_at);
INSERT INTO outbox VALUES
    ('old', 'webhook', '42', 'hi', '[]', 'failed', 1.0, 2, 0, NULL, 'HTTP 403', NULL, 0, NULL);
PRAGMA user_version=2;
"""


async def test_an_outbox_file_from_before_the_record_of_attempts_upgrades_in_place(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(_SCHEMA_2)
    conn.close()
    async with SqliteOutbox(path) as one, SqliteOutbox(path) as two:
        await one.events()
        await two.events()  # a second process on the upgraded file finds nothing to add
        old = await one.event("old")
        assert (old.status, old.attempts, old.last_error, old.attempt_log) == (
            "failed",
            2,
            "HTTP 403",
            (),
        )
        await one.retry("old", now=5.0)
        (taken,) = (await two.claim_due(now=6.0, limit=1, worker="w")).events
        assert [a.number for a in taken.attempt_log] == [3]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()


async def test_a_database_from_before_the_record_of_attempts_migrates_in_place(
    postgres_url: str,
) -> None:
    async with PostgresDatabase(postgres_url) as db:
        # Back to the schema before 0110, holding an event.
        async with db.connection() as conn:
            await conn.execute("ALTER TABLE outbox DROP COLUMN attempt_log")
            await conn.execute("DELETE FROM nanobot_schema WHERE name = '0110-outbox-attempt-log'")
            await conn.execute(
                "INSERT INTO outbox (id, channel, chat_id, content, media, status, created_at, "
                "attempts, progress) VALUES ('old', 'webhook', '42', 'hi', '[]', 'pending', 1.0, "
                "2, 0)"
            )
        assert await db.migrate() == ("0110-outbox-attempt-log",)
        outbox = PostgresOutbox(db)
        old = await outbox.event("old")
        assert (old.attempts, old.attempt_log) == (2, ())
        (taken,) = (await outbox.claim_due(now=6.0, limit=1, worker="w")).events
        assert [a.number for a in (await outbox.event("old")).attempt_log] == [3]
        assert taken.attempts == 3
