"""The courier and the background worker over a working outbox and scripted channels."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import anyio
import attrs
import pytest

from nanobot_api.app.outbox import Courier, OutboxWorker
from nanobot_api.domain.errors import DeliveryFailed, StorageUnavailable
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent, RetryPolicy, claimed
from nanobot_api.domain.ports import OutboundChannel
from tests.fakes import InMemoryOutbox, ScriptedChannel

FAST = RetryPolicy(max_attempts=3, base_s=0.02, max_s=0.05)


def pending(n: int, chat: str = "42", channel: str = "telegram") -> OutboxEvent:
    return OutboxEvent.pending(OutboundMessage(f"e{n}", channel, chat, f"text {n}"), time.time())


@asynccontextmanager
async def running(
    outbox: InMemoryOutbox,
    channels: Mapping[str, OutboundChannel],
    *,
    policy: RetryPolicy = FAST,
    concurrency: int = 8,
    random_source: Callable[[], float] = lambda: 0.5,
) -> AsyncIterator[OutboxWorker]:
    courier = Courier(
        outbox,
        channels,
        policy=policy,
        random_source=random_source,
        secrets=("s3cr3t-token",),
        attempt_timeout_s=1.0,
    )
    worker = OutboxWorker(courier, concurrency=concurrency, poll_s=0.05)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


async def statuses(outbox: InMemoryOutbox) -> dict[str, str]:
    return {e.id: e.status for e in await outbox.events()}


async def test_due_events_are_delivered_and_marked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    for n in range(5):
        await outbox.enqueue(pending(n, chat=str(n)))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(5)
    assert sorted(m.event_id for m in channel.sent) == [f"e{n}" for n in range(5)]
    assert set((await statuses(outbox)).values()) == {"delivered"}
    assert "e0 delivered to telegram:0" in caplog.text
    assert "text 0" not in caplog.text  # message texts stay out of the log


async def test_a_retryable_failure_is_retried_after_the_backoff() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    channel.script.extend([DeliveryFailed("telegram: HTTP 503", retryable=True), None])
    await outbox.enqueue(pending(1))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(2)
    (first, _), (second, _) = channel.attempts
    assert second - first >= FAST.cap(1) * 0.75 - 0.005  # half the cap + half the jitter
    (event,) = await outbox.events()
    assert (event.status, event.attempts, event.last_error) == (
        "delivered",
        2,
        "telegram: HTTP 503",
    )


async def test_retry_after_is_honoured() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    channel.script.append(DeliveryFailed("HTTP 429", retryable=True, retry_after_s=0.3))
    await outbox.enqueue(pending(1))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(2)
    (first, _), (second, _) = channel.attempts
    assert second - first >= 0.29


async def test_after_max_attempts_it_fails_with_the_last_error_scrubbed() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    channel.script.extend(
        [DeliveryFailed(f"HTTP 50{n} s3cr3t-token", retryable=True) for n in range(3)]
    )
    await outbox.enqueue(pending(1))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(3)
    (event,) = await outbox.events()
    assert (event.status, event.attempts) == ("failed", 3)
    assert event.last_error == "HTTP 502 *** (gave up after 3 attempts)"


async def test_a_permanent_failure_is_not_retried() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    channel.script.append(DeliveryFailed("HTTP 403 blocked", retryable=False, progress=1))
    await outbox.enqueue(pending(1))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(1)
        await anyio.sleep(0.15)  # a few polls: nothing more happens
    assert len(channel.attempts) == 1
    (event,) = await outbox.events()
    assert (event.status, event.progress) == ("failed", 1)


async def test_a_retry_resumes_after_the_delivered_steps() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    channel.script.append(DeliveryFailed("HTTP 500", retryable=True, progress=2))
    await outbox.enqueue(pending(1))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(2)
    assert [m.progress for _, m in channel.attempts] == [0, 2]


async def test_an_attempt_cut_off_by_a_crash_is_delivered_at_the_next_start() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    # Claimed (attempt counted) and never settled: the process died mid-send.
    await outbox.enqueue(claimed(pending(1), time.time()))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(1)
    (event,) = await outbox.events()
    assert (event.status, event.attempts) == ("delivered", 2)


async def test_an_event_for_a_channel_no_longer_enabled_is_queued() -> None:
    outbox = InMemoryOutbox()
    channel = ScriptedChannel()
    await outbox.enqueue(pending(1, channel="discord"))
    await outbox.enqueue(pending(2))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(1)
        await anyio.sleep(0.1)
    assert await statuses(outbox) == {"e1": "queued", "e2": "delivered"}
    (queued, _) = await outbox.events()
    assert queued.last_error == "channel 'discord' is not enabled"


async def test_a_channels_bug_is_a_retryable_internal_error() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    channel.script.append(RuntimeError("http://x/bots3cr3t-token/ boom"))
    await outbox.enqueue(pending(1))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(2)
    (event,) = await outbox.events()
    assert event.status == "delivered"
    assert event.last_error == "telegram: internal error (RuntimeError)"


async def test_concurrency_is_bounded() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    gate = anyio.Event()
    for n in range(12):
        channel.script.append(gate)
        await outbox.enqueue(pending(n, chat=str(n)))
    async with running(outbox, {"telegram": channel}, concurrency=3):
        await channel.wait_active(3)
        await anyio.sleep(0.05)  # time for a fourth to start, if the bound failed
        assert channel.active == 3
        gate.set()
        await channel.wait_attempts(12)
    assert channel.max_active == 3


async def test_one_chat_gets_its_events_one_at_a_time_in_order() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    for n in range(6):
        await outbox.enqueue(attrs.evolve(pending(n), next_attempt_at=float(n)))
    async with running(outbox, {"telegram": channel}):
        await channel.wait_attempts(6)
    assert [m.event_id for m in channel.sent] == [f"e{n}" for n in range(6)]
    assert channel.max_active == 1


async def test_events_added_while_it_runs_are_found_by_polling() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    async with running(outbox, {"telegram": channel}) as worker:
        await anyio.sleep(0.02)
        await outbox.enqueue(pending(1))
        await channel.wait_attempts(1)
        await outbox.enqueue(pending(2))
        worker.wake()
        await channel.wait_attempts(2)
    assert [m.event_id for m in channel.sent] == ["e1", "e2"]


async def test_stop_lets_a_delivery_under_way_finish() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    gate = anyio.Event()
    channel.script.append(gate)
    await outbox.enqueue(pending(1))
    courier = Courier(outbox, {"telegram": channel}, policy=FAST)
    worker = OutboxWorker(courier, poll_s=0.05)
    async with anyio.create_task_group() as group:
        group.start_soon(worker.run)
        await channel.wait_active(1)
        worker.stop()
        gate.set()
    assert await statuses(outbox) == {"e1": "delivered"}


async def test_a_stopped_worker_ends_at_once_with_claims_to_keep() -> None:
    """Its claim keeper sleeps a third of a claim between renewals; a stop (a server's
    shutdown) must not wait for it."""
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    gate = anyio.Event()
    channel.script.append(gate)
    await outbox.enqueue(pending(1))
    worker = OutboxWorker(Courier(outbox, {"telegram": channel}, policy=FAST), claim_s=30.0)
    with anyio.fail_after(2):
        async with anyio.create_task_group() as group:
            group.start_soon(worker.run)
            await channel.wait_active(1)
            worker.stop()
            gate.set()  # the delivery under way still finishes
    assert await statuses(outbox) == {"e1": "delivered"}


class FlakyUploads:
    """UploadCopies whose store answers ``copies`` once it is back (until then, down)."""

    def __init__(self) -> None:
        self.down = True

    async def local_copy(self, path: str) -> str | None:
        if self.down:
            raise StorageUnavailable("The database (db:5432/x) is unavailable")
        return "/here/" + path.rsplit("/", 1)[-1]


async def test_files_are_sent_from_this_machines_copy_and_a_store_down_is_retried() -> None:
    outbox, channel = InMemoryOutbox(), ScriptedChannel()
    uploads = FlakyUploads()
    courier = Courier(outbox, {"telegram": channel}, policy=FAST, uploads=uploads)
    message = OutboundMessage("e1", "telegram", "42", "report", ("/elsewhere/ws/media/api/f.pdf",))
    event = claimed(OutboxEvent.pending(message, time.time()), time.time())
    await outbox.enqueue(event)
    after, _ = await courier.deliver(event)
    assert after.status == "pending"  # tried again later, not failed
    assert "unavailable" in (after.last_error or "")
    assert channel.attempts == []
    uploads.down = False
    after, _ = await courier.deliver(claimed(after, time.time()))
    assert after.status == "delivered"
    assert channel.sent[0].media == ("/here/f.pdf",)
