"""Small working implementations of ports, for unit tests of one layer."""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Collection, Sequence
from pathlib import PurePath

import anyio

from nanobot_api.domain.attachments import Document, Image, Upload
from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.errors import DeliveryFailed, NotFound, UnsupportedMediaType
from nanobot_api.domain.idempotency import Claimed, KeyClaim, StoredAnswer, decide
from nanobot_api.domain.outbox import (
    Claim,
    DeliveryReceipt,
    OutboundMessage,
    OutboxEvent,
    OutboxStatus,
    OutboxTally,
    claimed,
    retried,
)
from nanobot_api.domain.ports import Reply
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.turns import Turn


class GatedAgent:
    """An agent whose turns wait for the test to open their gate, so tests can observe
    which turns are running at the same time without sleeping."""

    def __init__(self, model: str = "gated") -> None:
        self._model = model
        self.running: list[str] = []
        self.started: dict[str, anyio.Event] = {}
        self.gates: dict[str, anyio.Event] = {}
        self.ended: dict[str, anyio.Event] = {}
        self.seen: list[Turn] = []
        self.max_overlap_per_session: dict[str, int] = {}

    @property
    def model(self) -> str:
        return self._model

    def gate(self, text: str) -> anyio.Event:
        return self.gates.setdefault(text, anyio.Event())

    def started_event(self, text: str) -> anyio.Event:
        return self.started.setdefault(text, anyio.Event())

    def ended_event(self, text: str) -> anyio.Event:
        """Set when the turn stops running, whether it finished, failed or was cancelled."""
        return self.ended.setdefault(text, anyio.Event())

    async def respond(self, turn: Turn, reply: Reply) -> None:
        self.seen.append(turn)
        self.running.append(turn.text)
        key = str(turn.session)
        overlap = sum(1 for t in self.seen if str(t.session) == key and t.text in self.running)
        self.max_overlap_per_session[key] = max(self.max_overlap_per_session.get(key, 0), overlap)
        self.started_event(turn.text).set()
        try:
            await self.gate(turn.text).wait()
            await reply.send(f"done {turn.text}")
            reply.add_usage(Usage(1, 2))
        finally:
            self.running.remove(turn.text)
            self.ended_event(turn.text).set()


class FailingAgent:
    """An agent that writes part of an answer, then raises the given error."""

    def __init__(self, error: Exception, model: str = "failing") -> None:
        self._error = error
        self._model = model

    @property
    def model(self) -> str:
        return self._model

    async def respond(self, turn: Turn, reply: Reply) -> None:
        await reply.send("partial ")
        raise self._error


class SilentAgent:
    """An agent that answers nothing at all."""

    model = "silent"

    async def respond(self, turn: Turn, reply: Reply) -> None:
        reply.add_usage(Usage(3, 0))


class TextOnlyAttachments:
    """Accepts uploads that are UTF-8 text, as documents; refuses anything else."""

    async def accept(
        self, uploads: Sequence[Upload], session: SessionKey | None = None
    ) -> tuple[tuple[Image, ...], tuple[Document, ...]]:
        documents = []
        for upload in uploads:
            try:
                text = upload.data.decode()
            except UnicodeDecodeError:
                raise UnsupportedMediaType("Unsupported file type") from None
            documents.append(Document(upload.label, text, f"/media/{upload.label}"))
        return (), tuple(documents)


class InMemoryOutbox:
    """An Outbox and OutboxAdmin in a dict: the same rules as SqliteOutbox, no file."""

    def __init__(self, *, claim_s: float = 30.0) -> None:
        self.rows: dict[str, OutboxEvent] = {}
        # Until when each event being delivered is claimed (what a retry looks at).
        self.claims: dict[str, float] = {}
        self._claim_s = claim_s

    async def enqueue(self, event: OutboxEvent) -> None:
        if event.id in self.rows:
            raise ValueError(f"outbox event {event.id!r} exists")
        self.rows[event.id] = event
        if event.status == "pending" and event.attempts > 0:  # the message tool sends at once
            self.claims[event.id] = event.created_at + self._claim_s

    async def claim_due(
        self, now: float, limit: int, exclude: Collection[str] = (), *, worker: str | None = None
    ) -> Claim:
        pending = sorted(
            (e for e in self.rows.values() if e.status == "pending" and e.id not in exclude),
            key=lambda e: e.next_attempt_at if e.next_attempt_at is not None else now,
        )
        taken: list[OutboxEvent] = []
        next_due: float | None = None
        for event in pending:
            due = event.next_attempt_at if event.next_attempt_at is not None else now
            if due > now or len(taken) >= limit:
                next_due = due
                break
            taken.append(claimed(event, now, worker))
            self.rows[event.id] = taken[-1]
            self.claims[event.id] = now + self._claim_s
        return Claim(tuple(taken), next_due)

    async def extend_claims(self, event_ids: Collection[str], now: float) -> None:
        """One process, whose ``exclude`` says what it is delivering: the claims are kept
        only for what a retry looks at."""
        for event_id in event_ids:
            if event_id in self.claims:
                self.claims[event_id] = now + self._claim_s

    async def settle(self, event: OutboxEvent) -> bool:
        self.claims.pop(event.id, None)
        if event.id not in self.rows:
            return False
        self.rows[event.id] = event
        return True

    async def awaited_files(self) -> frozenset[str]:
        waiting = (e for e in self.rows.values() if e.status in ("queued", "pending"))
        return frozenset(PurePath(path).name for e in waiting for path in e.media)

    async def events(self, status: OutboxStatus | None = None) -> tuple[OutboxEvent, ...]:
        return tuple(e for e in self.rows.values() if status is None or e.status == status)

    async def event(self, event_id: str) -> OutboxEvent:
        return self._get(event_id)

    async def tally(self) -> OutboxTally:
        counts = Counter(e.status for e in self.rows.values())
        waiting = [e.created_at for e in self.rows.values() if e.status in ("queued", "pending")]
        return OutboxTally(
            queued=counts["queued"],
            pending=counts["pending"],
            failed=counts["failed"],
            delivered=counts["delivered"],
            oldest_waiting_at=min(waiting, default=None),
        )

    async def retry(self, event_id: str, now: float, *, force: bool = False) -> OutboxEvent:
        until = self.claims.get(event_id)
        event = retried(self._get(event_id), now, force=force, claimed_until=until)
        self.rows[event_id] = event
        self.claims.pop(event_id, None)
        return event

    async def drop(self, event_id: str) -> OutboxEvent:
        self.claims.pop(event_id, None)
        return self.rows.pop(event_id, None) or self._get(event_id)

    def _get(self, event_id: str) -> OutboxEvent:
        if event_id not in self.rows:
            raise NotFound(f"No outbox event with id {event_id!r}", param="id")
        return self.rows[event_id]


class ScriptedChannel:
    """An OutboundChannel that records what it is asked to send and follows a script:
    each attempt takes the next step (None: deliver; a DeliveryFailed or other exception:
    raise it; an anyio.Event: wait for it, then deliver)."""

    def __init__(self, name: str = "telegram") -> None:
        self.name = name
        self.script: deque[DeliveryFailed | Exception | anyio.Event | None] = deque()
        self.attempts: list[tuple[float, OutboundMessage]] = []
        self.sent: list[OutboundMessage] = []
        self.active = 0
        self.max_active = 0
        self._changed = anyio.Event()

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        self.attempts.append((time.monotonic(), message))
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        self._notify()
        try:
            step = self.script.popleft() if self.script else None
            if isinstance(step, anyio.Event):
                await step.wait()
            elif step is not None:
                raise step
            self.sent.append(message)
            return DeliveryReceipt(self.name, message.chat_id, (str(len(self.sent)),))
        finally:
            self.active -= 1
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_attempts(self, count: int) -> None:
        """Returns once ``count`` attempts have ended (delivered or not)."""
        while len(self.attempts) < count or self.active:
            await self._changed.wait()

    async def wait_active(self, count: int) -> None:
        """Returns once ``count`` attempts are under way at the same time."""
        while self.active < count:
            await self._changed.wait()


class CollectingReply:
    """A Reply that keeps the deltas and usage it is given; agents under test here must
    leave history to the chat use case, so ``remember`` fails the test."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.usage = Usage()

    async def send(self, delta: str) -> None:
        self.deltas.append(delta)

    def add_usage(self, usage: Usage) -> None:
        self.usage += usage

    def remember(self, message: Message) -> None:
        raise AssertionError(f"unexpected remember({message!r}): history is the server's")


class InMemoryRequestRecords:
    """IdempotencyStore and LimitCounters in dicts, for one process."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], tuple[str, float, float, StoredAnswer | None]] = {}
        self.counts: dict[str, tuple[float, int]] = {}
        self.slots: dict[str, dict[str, float]] = {}

    async def claim(
        self, scope: str, key: str, fingerprint: str, *, now: float, lease_s: float, ttl_s: float
    ) -> KeyClaim:
        self.records = {k: v for k, v in self.records.items() if v[1] >= now - ttl_s}
        found = self.records.get((scope, key))
        if found is None:
            self.records[scope, key] = (fingerprint, now, now + lease_s, None)
            return Claimed()
        stored, created, lease_until, answer = found
        decision = decide(stored, fingerprint, answer, lease_until, now)
        if isinstance(decision, Claimed):
            self.records[scope, key] = (stored, created, now + lease_s, None)
        return decision

    async def finish(self, scope: str, key: str, answer: StoredAnswer) -> None:
        stored, created, lease_until, _ = self.records[scope, key]
        self.records[scope, key] = (stored, created, lease_until, answer)

    async def abandon(self, scope: str, key: str) -> None:
        found = self.records.get((scope, key))
        if found is not None and found[3] is None:
            del self.records[scope, key]

    async def renew(self, scope: str, key: str, until: float) -> None:
        found = self.records.get((scope, key))
        if found is not None and found[3] is None:
            self.records[scope, key] = (found[0], found[1], until, None)

    async def add(self, bucket: str, window_start: float) -> int:
        start, count = self.counts.get(bucket, (window_start, 0))
        count = 1 if window_start > start else count + 1
        self.counts[bucket] = (max(start, window_start), count)
        return count

    async def count(self, bucket: str, window_start: float) -> int:
        start, count = self.counts.get(bucket, (window_start, 0))
        return count if start == window_start else 0

    async def take_slot(
        self, bucket: str, token: str, limit: int, *, now: float, lease_s: float
    ) -> bool:
        held = {t: until for t, until in self.slots.get(bucket, {}).items() if until > now}
        self.slots[bucket] = held
        if len(held.keys() - {token}) >= limit:
            return False
        held[token] = now + lease_s
        return True

    async def free_slot(self, bucket: str, token: str) -> None:
        self.slots.get(bucket, {}).pop(token, None)


class ToolStepAgent:
    """Runs one server tool step (recorded as the LLM agent records it), then answers."""

    def __init__(self, model: str = "nanobot-echo", arguments: str = '{"q": "weather"}') -> None:
        self.model = model
        self._arguments = arguments

    async def respond(self, turn: Turn, reply: Reply) -> None:
        call = ToolCall("call_1", "search", self._arguments)
        reply.remember(Message.assistant(None, (call,)))
        reply.remember(Message.tool_result("call_1", "sunny"))
        reply.remember(Message.assistant("it is sunny"))
        await reply.send("it is sunny")


class HistoryCounter:
    """An agent that answers how many turns its session held before this one, and
    counts its turns; with ``gate`` set, each turn waits for it after ``started``."""

    model = "counter"

    def __init__(self) -> None:
        self.turns = 0
        self.gate: anyio.Event | None = None
        self.started = anyio.Event()

    async def respond(self, turn: Turn, reply: Reply) -> None:
        self.turns += 1
        self.started.set()
        if self.gate is not None:
            await self.gate.wait()
        await reply.send(f"{len(turn.history)} before")
