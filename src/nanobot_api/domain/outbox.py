"""Outbound messages, the outbox's events, and the pure rules that move them along.

An event is written to the outbox before any platform sees it, then moves between
four states::

    queued     its channel is not enabled: kept, never delivered (until retried by hand)
    pending    waiting for its first or next delivery attempt, due at ``next_attempt_at``
    failed     out of attempts, or refused by the platform for good; ``last_error`` says why
    delivered  every step reached the platform

Each event also keeps a record of its last attempts (when, by which process, with what
outcome; see :mod:`nanobot_api.domain.delivery_attempts`), which every transition here
keeps up to date.

The functions here compute the next state of an event from what happened to it; they
take the clock's reading and a random source as arguments, so they are deterministic
under test. Long texts are split per platform with :func:`split_text`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Collection
from typing import Literal, TypeAlias

import attrs

from nanobot_api.domain.delivery_attempts import MAX_ERROR_CHARS, DeliveryAttempt, began, ended
from nanobot_api.domain.errors import InvalidRequest, RetryLater
from nanobot_api.domain.redaction import Redactor
from nanobot_api.domain.text import shorten

OutboxStatus: TypeAlias = Literal["queued", "pending", "failed", "delivered"]
OUTBOX_STATUSES: tuple[OutboxStatus, ...] = ("queued", "pending", "failed", "delivered")

# The longest text one platform message may hold. Counted here in UTF-16 code units,
# which is what the platforms' JavaScript-based limits count, and never fewer than code
# points: a part that fits by this measure fits by either.
TELEGRAM_TEXT_LIMIT = 4096
DISCORD_TEXT_LIMIT = 2000
SLACK_TEXT_LIMIT = 40000

# Wait at most this long when a platform's Retry-After asks for more: a day.
_MAX_RETRY_AFTER_S = 86400.0
# Past this many doublings the cap is max_s anyway; stops 2**n from growing unbounded.
_MAX_DOUBLINGS = 60


@attrs.frozen
class OutboundMessage:
    """What an outbound channel is asked to deliver.

    ``event_id`` is stable across retries (channels that can use it as a dedupe key do).
    ``media`` holds absolute paths of files already checked to lie in the workspace.
    ``progress`` is how many steps (text parts, then one per file) a previous attempt
    already delivered; a channel starts after them.
    """

    event_id: str
    channel: str
    chat_id: str
    content: str
    media: tuple[str, ...] = ()
    progress: int = 0


@attrs.frozen
class DeliveryReceipt:
    """What the platform answered for a delivered message: its id for each step sent."""

    channel: str
    chat_id: str
    message_ids: tuple[str, ...] = ()


@attrs.frozen
class OutboxEvent:
    """One outbound message and where its delivery stands. Times are Unix seconds."""

    id: str
    channel: str
    chat_id: str
    content: str
    media: tuple[str, ...]
    status: OutboxStatus = attrs.field(validator=attrs.validators.in_(OUTBOX_STATUSES))
    created_at: float
    attempts: int = 0
    progress: int = 0
    next_attempt_at: float | None = None
    last_error: str | None = None
    delivered_at: float | None = None
    # ``attempts`` counts every attempt ever made; an operator's retry starts a fresh
    # budget of attempts from here instead of resetting the count.
    retried_from: int = 0
    # The records of its last attempts, oldest first (domain.delivery_attempts).
    attempt_log: tuple[DeliveryAttempt, ...] = ()

    @property
    def attempts_left_from(self) -> int:
        """The attempts counted against the retry policy: those since the last retry."""
        return self.attempts - self.retried_from

    @classmethod
    def pending(cls, message: OutboundMessage, now: float) -> OutboxEvent:
        """A new event for an enabled channel, due at once."""
        m = message
        return cls(
            m.event_id,
            m.channel,
            m.chat_id,
            m.content,
            m.media,
            "pending",
            now,
            next_attempt_at=now,
        )

    @classmethod
    def queued(cls, message: OutboundMessage, now: float) -> OutboxEvent:
        """A new event for a channel that is not enabled: kept, not delivered."""
        m = message
        reason = not_enabled_reason(m.channel)
        return cls(
            m.event_id, m.channel, m.chat_id, m.content, m.media, "queued", now, last_error=reason
        )

    @property
    def message(self) -> OutboundMessage:
        """What its channel is asked to deliver, resuming after the steps already sent."""
        return OutboundMessage(
            self.id, self.channel, self.chat_id, self.content, self.media, self.progress
        )

    @property
    def address(self) -> str:
        """``<channel>:<chat_id>``, as tool results and the CLI show it."""
        return f"{self.channel}:{self.chat_id}"


@attrs.frozen
class Claim:
    """Events taken for delivery now, and when the next remaining pending one falls due."""

    events: tuple[OutboxEvent, ...]
    next_due_at: float | None


_COUNT = attrs.validators.ge(0)


@attrs.frozen
class OutboxTally:
    """How many events the outbox holds in each state, and when the oldest one still
    waiting to go out (queued or pending) was created: None when none is."""

    queued: int = attrs.field(default=0, validator=_COUNT)
    pending: int = attrs.field(default=0, validator=_COUNT)
    failed: int = attrs.field(default=0, validator=_COUNT)
    delivered: int = attrs.field(default=0, validator=_COUNT)
    oldest_waiting_at: float | None = None

    def count(self, status: OutboxStatus) -> int:
        counts = {
            "queued": self.queued,
            "pending": self.pending,
            "failed": self.failed,
            "delivered": self.delivered,
        }
        return counts[status]

    def waiting_age_s(self, now: float) -> float:
        """Seconds the oldest waiting event has waited at ``now``: 0 when none waits, and
        never below 0 (the event may come from a machine whose clock runs ahead)."""
        if self.oldest_waiting_at is None:
            return 0.0
        return max(0.0, now - self.oldest_waiting_at)


def redact(text: str, secrets: Collection[str]) -> str:
    """``text`` with every secret in ``secrets`` replaced by ``***``, by the rules of the
    one :class:`~nanobot_api.domain.redaction.Redactor`."""
    return Redactor(tuple(secrets))(text)


def not_enabled_reason(channel: str) -> str:
    """Why an event for ``channel`` is queued rather than delivered."""
    return f"channel '{channel}' is not enabled"


# ---- state transitions ----------------------------------------------------------------


@attrs.frozen
class RetryPolicy:
    """How often and how patiently a retryable failure is retried.

    Attempt ``n`` (1-based) that fails is followed, after a wait, by attempt ``n + 1``
    unless ``n`` is ``max_attempts``. The wait is exponential with "equal jitter": half
    of ``min(max_s, base_s * 2 ** (n - 1))`` plus a random share of the other half, so
    retries of many events spread out instead of arriving together; never less than the
    platform's Retry-After.
    """

    max_attempts: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    base_s: float = attrs.field(default=2.0, validator=attrs.validators.gt(0))
    max_s: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))

    def cap(self, attempts: int) -> float:
        """The longest wait after the ``attempts``-th failed attempt."""
        doublings = min(max(attempts - 1, 0), _MAX_DOUBLINGS)
        return min(self.max_s, self.base_s * 2.0**doublings)

    def delay(
        self, attempts: int, random: Callable[[], float], retry_after_s: float | None = None
    ) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt; ``random`` in [0, 1)."""
        cap = self.cap(attempts)
        share = min(max(random(), 0.0), 1.0)
        wait = cap / 2 + share * cap / 2
        if retry_after_s is not None and retry_after_s > 0:
            wait = max(wait, min(retry_after_s, _MAX_RETRY_AFTER_S))
        return wait


def claimed(event: OutboxEvent, now: float, worker: str | None = None) -> OutboxEvent:
    """The event as an attempt to deliver it begins at ``now`` in the process named
    ``worker``: the attempt is counted and put on record up front, so a crash in the
    middle of it still counts and a poison message cannot loop forever."""
    number = event.attempts + 1
    log = began(event.attempt_log, number, now, worker)
    return attrs.evolve(event, attempts=number, attempt_log=log)


def delivered(event: OutboxEvent, now: float, steps: int | None = None) -> OutboxEvent:
    """The event after its last step reached the platform: its attempt on record too."""
    return attrs.evolve(
        event,
        attempt_log=ended(event.attempt_log, now),
        status="delivered",
        next_attempt_at=None,
        delivered_at=now,
        progress=event.progress if steps is None else steps,
    )


def failed_attempt(
    event: OutboxEvent,
    error: str,
    *,
    retryable: bool,
    now: float,
    policy: RetryPolicy,
    random: Callable[[], float],
    retry_after_s: float | None = None,
    progress: int | None = None,
) -> OutboxEvent:
    """The event after an attempt failed with ``error`` (already free of secrets; a
    plugin's could be a whole page: kept to MAX_ERROR_CHARS).

    Pending again, due after the policy's wait, if the failure is retryable and attempts
    remain; else failed for good. ``progress`` (steps delivered so far) never goes back.
    The attempt is on record as failed with ``error``.
    """
    error = shorten(error, MAX_ERROR_CHARS)
    done = max(event.progress, progress or 0)
    event = attrs.evolve(event, attempt_log=ended(event.attempt_log, now, error))
    counted = event.attempts_left_from
    if retryable and counted < policy.max_attempts:
        wait = policy.delay(counted, random, retry_after_s)
        return attrs.evolve(
            event, status="pending", next_attempt_at=now + wait, last_error=error, progress=done
        )
    if retryable:
        error = f"{error} (gave up after {counted} attempts)"
    return attrs.evolve(
        event, status="failed", next_attempt_at=None, last_error=error, progress=done
    )


def parked(event: OutboxEvent, now: float) -> OutboxEvent:
    """The event when its channel turns out not to be enabled at ``now``: queued, not
    delivered; the attempt is on record as failed for that reason."""
    reason = not_enabled_reason(event.channel)
    log = ended(event.attempt_log, now, reason)
    return attrs.evolve(
        event, status="queued", next_attempt_at=None, last_error=reason, attempt_log=log
    )


def retried(
    event: OutboxEvent, now: float, *, force: bool = False, claimed_until: float | None = None
) -> OutboxEvent:
    """The event after an operator asks for it again: pending, due now, with a fresh
    budget of attempts; the attempts made so far stay counted and on record, its last
    error stays.

    A failed event resumes after the steps already delivered. A delivered one is
    refused (InvalidRequest), since the chat already has it, unless ``force``: then it
    is sent again whole. A pending event that a worker has claimed until after ``now``
    is being delivered right now: refused (RetryLater, until the claim runs out), with
    or without ``force``, since making it due again would let another worker send it a
    second time while the first attempt runs; once that attempt settles, it is either
    delivered (``force`` sends it again) or pending or failed, and a retry applies.
    """
    if event.status == "pending" and claimed_until is not None and claimed_until > now:
        wait = claimed_until - now
        raise RetryLater(
            f"Event {event.id} is being delivered right now; if it has not gone out, "
            f"retry it once this attempt has ended (within {math.ceil(wait)} s)",
            retry_after_s=wait,
            param="id",
        )
    if event.status == "delivered" and not force:
        raise InvalidRequest(
            f"Event {event.id} was already delivered; retry it with --force to send it again",
            "id",
        )
    progress = 0 if event.status == "delivered" else event.progress
    return attrs.evolve(
        event,
        status="pending",
        retried_from=event.attempts,
        progress=progress,
        next_attempt_at=now,
    )


# ---- splitting long texts ---------------------------------------------------------------

# Preferred places to cut, best first: between paragraphs, lines, words.
_SEPARATORS = ("\n\n", "\n", " ")
# Code points that belong to the character before them; a hard cut keeps them together.
_JOINERS = frozenset("\u200d\ufe0e\ufe0f")


def utf16_len(text: str) -> int:
    """The length of ``text`` in UTF-16 code units (a code point above U+FFFF is two)."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def split_text(text: str, limit: int) -> tuple[str, ...]:
    """``text`` cut into parts of at most ``limit`` UTF-16 units each, in order.

    Joining the parts gives back ``text`` exactly: nothing is dropped, added or moved.
    Each cut is made after the last paragraph break, else line break, else space that
    leaves the part at least half full; only a text with none of those is cut mid-word
    (never between a character and a combining mark or joiner that follows it).
    An empty text has no parts. Raises ValueError if ``limit`` < 2 (a code point may
    take two units).
    """
    if limit < 2:
        raise ValueError("limit must be at least 2")
    parts: list[str] = []
    rest = text
    while rest:
        size = _fitting(rest, limit)
        if size == len(rest):
            parts.append(rest)
            break
        cut = _cut(rest, size)
        parts.append(rest[:cut])
        rest = rest[cut:]
    return tuple(parts)


def _fitting(text: str, limit: int) -> int:
    """How many code points of ``text``'s start fit in ``limit`` UTF-16 units."""
    size = min(len(text), limit)
    units = utf16_len(text[:size])
    while units > limit:
        size -= 1
        units -= 2 if ord(text[size]) > 0xFFFF else 1
    return size


def _cut(text: str, size: int) -> int:
    window = text[:size]
    floor = size // 2
    for separator in _SEPARATORS:
        at = window.rfind(separator, floor)
        if at != -1:
            return at + len(separator)
    cut = size
    while cut > floor and _belongs_to_previous(text[cut]):
        cut -= 1
    return cut if cut > floor else size


def _belongs_to_previous(char: str) -> bool:
    return char in _JOINERS or unicodedata.combining(char) != 0
