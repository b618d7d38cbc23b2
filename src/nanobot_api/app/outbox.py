"""Delivering the outbox: one attempt at a time (:class:`Courier`), and the background
loop that takes due events and retries them (:class:`OutboxWorker`).

Delivery is at least once. An event is stored before it is tried, its attempt is
counted before it is sent, and its outcome is written after; a crash between the
platform's answer and that write leaves it pending, so it is sent again after a
restart. Channels that can recognise the repeat (Discord's nonce, the webhook's event
id) turn that into exactly once; the others may show it twice.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Collection, Mapping

import anyio
import attrs
from anyio.abc import TaskGroup

from nanobot_api.app.telemetry import NO_TELEMETRY
from nanobot_api.domain.errors import DeliveryFailed, StorageUnavailable
from nanobot_api.domain.outbox import (
    DeliveryReceipt,
    OutboundMessage,
    OutboxEvent,
    RetryPolicy,
    delivered,
    failed_attempt,
    parked,
    redact,
)
from nanobot_api.domain.ports import OutboundChannel, Outbox, Telemetry, UploadCopies

log = logging.getLogger(__name__)


class Courier:
    """Makes one delivery attempt of an event and records its outcome.

    ``in_flight`` holds the ids of events being delivered in this process; whoever
    starts a delivery adds the id *before* the event can be claimed (the message tool
    before it enqueues, the worker as it claims), and :meth:`deliver` removes it at the
    end, so no event is ever sent twice at once. ``secrets`` are scrubbed from every
    error before it is stored, logged or shown, whatever channel (plugins included)
    wrote it. ``uploads`` gives each attached file a copy on this machine before a
    channel reads it (another replica may have taken the upload). ``worker`` names this
    process in the record of each attempt it makes (``outbox show``).
    """

    def __init__(
        self,
        outbox: Outbox,
        channels: Mapping[str, OutboundChannel],
        *,
        policy: RetryPolicy,
        random_source: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        secrets: Collection[str] = (),
        attempt_timeout_s: float = 300.0,
        telemetry: Telemetry = NO_TELEMETRY,
        uploads: UploadCopies | None = None,
        worker: str | None = None,
    ) -> None:
        self.outbox = outbox
        self.worker = worker
        self._uploads = uploads
        self._telemetry = telemetry
        self.channels = channels
        self.policy = policy
        self.in_flight: set[str] = set()
        # Called when an attempt leaves an event pending for later; the worker sets it,
        # so a retry scheduled by the message tool is not left for the next poll.
        self.on_pending: Callable[[], None] = lambda: None
        self._random = random_source
        self._clock = clock
        self._secrets = tuple(secrets)
        self._attempt_timeout_s = attempt_timeout_s

    def now(self) -> float:
        return self._clock()

    async def deliver(self, event: OutboxEvent) -> tuple[OutboxEvent, DeliveryReceipt | None]:
        """Tries ``event`` (already claimed: its attempt counted) once; returns its new
        state, stored, and the platform's receipt if it was delivered.

        Cancelled mid-send, it stores nothing: the event stays pending and due, and is
        tried again (by this process's worker, or after a restart).
        """
        try:
            channel = self.channels.get(event.channel)
            receipt: DeliveryReceipt | None = None
            if channel is None:
                after = parked(event, self._clock())
            else:
                with self._telemetry.span("channel delivery"):
                    receipt, after = await self._attempt(channel, event)
            # Once the platform has answered, the answer is recorded even if we are being
            # cancelled (shutdown, a caller gone): forgetting it would send it again.
            with anyio.CancelScope(shield=True):
                await self.outbox.settle(after)
        finally:
            self.in_flight.discard(event.id)
        self._log(after)
        if after.status == "pending":
            self.on_pending()
        return after, receipt

    async def _attempt(
        self, channel: OutboundChannel, event: OutboxEvent
    ) -> tuple[DeliveryReceipt | None, OutboxEvent]:
        try:
            # A channel bounds each request; this bounds a whole multi-part message and
            # any plugin that forgot to.
            with anyio.fail_after(self._attempt_timeout_s):
                receipt = await channel.send(await self._with_local_media(event))
        except DeliveryFailed as exc:
            return None, self._failed(event, exc.message, exc.retryable, exc.retry_after_s, exc)
        except StorageUnavailable as exc:  # the uploads' store: try again later
            text = f"{event.channel}: {exc.message}"
            return None, self._failed(event, text, True, exc.retry_after_s, None)
        except TimeoutError:
            text = f"{event.channel}: no answer within {self._attempt_timeout_s:g}s"
            return None, self._failed(event, text, True, None, None)
        except Exception as exc:  # a channel's bug must not stop the worker
            text = f"{event.channel}: internal error ({type(exc).__name__})"
            # No traceback: an exception's text may quote a URL holding the token.
            log.error("outbox: channel %s raised %s", event.channel, type(exc).__name__)  # noqa: TRY400
            return None, self._failed(event, text, True, None, None)
        return receipt, delivered(event, self._clock())

    async def _with_local_media(self, event: OutboxEvent) -> OutboundMessage:
        """The event's message with each file's path on this machine. A file the store
        no longer keeps keeps its path: the channel then reports it gone."""
        message = event.message
        if self._uploads is None or not message.media:
            return message
        paths = [await self._uploads.local_copy(path) or path for path in message.media]
        return attrs.evolve(message, media=tuple(paths))

    def _failed(
        self,
        event: OutboxEvent,
        error: str,
        retryable: bool,
        retry_after_s: float | None,
        exc: DeliveryFailed | None,
    ) -> OutboxEvent:
        return failed_attempt(
            event,
            redact(error, self._secrets),
            retryable=retryable,
            now=self._clock(),
            policy=self.policy,
            random=self._random,
            retry_after_s=retry_after_s,
            progress=exc.progress if exc is not None else None,
        )

    def _log(self, event: OutboxEvent) -> None:
        # Ids and addresses only: message texts are the users' business, and errors are
        # already scrubbed of secrets.
        if event.status == "delivered":
            log.info("outbox: %s delivered to %s", event.id, event.address)
        elif event.status == "pending":
            log.warning(
                "outbox: %s to %s failed (attempt %d), retrying: %s",
                event.id,
                event.address,
                event.attempts,
                event.last_error,
            )
        else:
            log.warning(
                "outbox: %s to %s is %s: %s",
                event.id,
                event.address,
                event.status,
                event.last_error,
            )


class OutboxWorker:
    """Delivers due pending events in the background, until stopped.

    At most ``max_in_flight`` events are taken at a time and at most ``concurrency``
    requests are open at once, so a backlog drains at a bounded pace and never crowds
    out chat turns (everything blocking runs off the event loop). Events for one chat
    are sent one after another, in the order they fell due, so a burst reaches the
    chat in order (and is not rate-limited for arriving all at once). Between rounds it
    sleeps until the next event falls due, a delivery ends, :meth:`wake` is called, or
    ``poll_s`` passes (which picks up ``nanobot outbox retry`` from another process).
    """

    def __init__(
        self,
        courier: Courier,
        *,
        concurrency: int = 8,
        max_in_flight: int = 64,
        poll_s: float = 2.0,
        claim_s: float | None = None,
    ) -> None:
        if concurrency < 1 or max_in_flight < 1:
            raise ValueError("concurrency and max_in_flight must be at least 1")
        self._courier = courier
        courier.on_pending = self.wake
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._max_in_flight = max_in_flight
        self._poll_s = poll_s
        self._claim_s = claim_s
        self._changed = anyio.Event()
        self._chat_locks: dict[str, tuple[anyio.Lock, int]] = {}
        self._stopping = False

    def wake(self) -> None:
        """Look for due events now rather than at the next timer."""
        self._changed.set()

    async def run(self) -> None:
        """Delivers until :meth:`stop` is called (or the task is cancelled)."""
        async with anyio.create_task_group() as keeping:
            if self._claim_s is not None:
                keeping.start_soon(self._keep_claims, self._claim_s)
            async with anyio.create_task_group() as group:
                while not self._stopping:
                    try:
                        next_due = await self._round(group)
                    except Exception:
                        # The outbox file is unreadable for a moment (locked, a full
                        # disk): keep serving and look again at the next poll.
                        log.exception("outbox: looking for due events failed")
                        next_due = None
                    wait = self._poll_s
                    if next_due is not None:
                        wait = min(wait, max(0.0, next_due - self._courier.now()))
                    if wait > 0 or len(self._courier.in_flight) >= self._max_in_flight:
                        with anyio.move_on_after(wait if wait > 0 else self._poll_s):
                            await self._changed.wait()
                    self._changed = anyio.Event()
            # Every delivery has ended: no claim is left to keep. (Waiting for the
            # keeper's next turn held every shutdown for up to storage.leaseS / 3.)
            keeping.cancel_scope.cancel()

    async def _keep_claims(self, claim_s: float) -> None:
        """Extends the claims of the events being delivered, a few times per claim
        period, so no other process takes them while they are under way."""
        while not self._stopping:
            await anyio.sleep(claim_s / 3)
            try:
                await self._courier.outbox.extend_claims(
                    frozenset(self._courier.in_flight), self._courier.now()
                )
            except Exception:
                log.exception("outbox: extending claims failed")

    def stop(self) -> None:
        """Takes no more events; deliveries under way finish (or are cancelled with the
        task running :meth:`run`)."""
        self._stopping = True
        self._changed.set()

    async def _round(self, group: TaskGroup) -> float | None:
        room = self._max_in_flight - len(self._courier.in_flight)
        # Refill in batches: a claim is a durable write, and one per finished delivery
        # would cost a sync of the file per event on top of the event's own settle.
        if room <= 0 or (room < self._max_in_flight // 2 and self._courier.in_flight):
            return None
        courier = self._courier
        claim = await courier.outbox.claim_due(
            courier.now(), room, frozenset(courier.in_flight), worker=courier.worker
        )
        for event in claim.events:
            courier.in_flight.add(event.id)
            group.start_soon(self._deliver, event, name=f"outbox {event.id}")
        return claim.next_due_at

    async def _deliver(self, event: OutboxEvent) -> None:
        address = event.address
        lock, users = self._chat_locks.get(address) or (anyio.Lock(), 0)
        self._chat_locks[address] = (lock, users + 1)
        try:
            async with lock, self._limiter:
                await self._courier.deliver(event)
        except Exception:
            # Storing the outcome failed (a full disk...): the event stays pending and
            # due, and the next round tries it again.
            log.exception("outbox: recording the outcome of %s failed", event.id)
            self._courier.in_flight.discard(event.id)
        finally:
            lock, users = self._chat_locks[address]
            if users <= 1:
                del self._chat_locks[address]
            else:
                self._chat_locks[address] = (lock, users - 1)
            self._changed.set()


def describe(event: OutboxEvent, now: float) -> str:
    """An event's state in a few words, for tool results and the CLI."""
    if event.status == "pending" and event.next_attempt_at is not None:
        wait = max(0.0, event.next_attempt_at - now)
        return f"pending, next attempt in {math.ceil(wait)}s"
    return event.status
