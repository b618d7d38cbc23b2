"""Responses, their steps and conversation records in process memory: the fakes of
ResponseStore, ResponseLog and ConversationStore (they really work, for tests and for
servers that need no durability)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import attrs

from nanobot_api.domain.conversations import ConversationRecord
from nanobot_api.domain.responses import (
    ResponseRecord,
    ResponseStep,
    forgettable,
    lost_its_run,
)
from nanobot_api.domain.sessions import SessionKey


class InMemoryResponseStore:
    """A ResponseStore, ResponseLog, RunLiveness and PausedCalls in dicts."""

    def __init__(self) -> None:
        self._records: dict[str, ResponseRecord] = {}
        # Session -> the calls its paused turn waits for; insertion order is pause order.
        self._paused: dict[SessionKey, tuple[str, ...]] = {}
        self._steps: dict[str, list[ResponseStep]] = {}
        self._order: dict[str, int] = {}
        self._count = 0

    async def put(self, record: ResponseRecord) -> None:
        old = self._records.get(record.id)
        if old is not None:
            cancel = record.cancel_requested or old.cancel_requested
            record = attrs.evolve(record, cancel_requested=cancel, alive_until=old.alive_until)
        if old is None:
            self._count += 1
            self._order[record.id] = self._count
        self._records[record.id] = record

    async def get(self, response_id: str) -> ResponseRecord | None:
        return self._records.get(response_id)

    async def delete(self, response_id: str) -> bool:
        self._steps.pop(response_id, None)
        self._order.pop(response_id, None)
        return self._records.pop(response_id, None) is not None

    async def request_cancel(self, response_id: str) -> ResponseRecord | None:
        record = self._records.get(response_id)
        if record is not None and record.running:
            record = self._records[response_id] = attrs.evolve(record, cancel_requested=True)
        return record

    async def latest(self, session: SessionKey) -> ResponseRecord | None:
        mine = [r for r in self._records.values() if r.session == session]
        return max(mine, key=lambda r: self._order[r.id], default=None)

    async def append(self, response_id: str, first: int, steps: Sequence[ResponseStep]) -> None:
        stored = self._steps.setdefault(response_id, [])
        for number, step in enumerate(steps, start=first):
            if number == len(stored):
                stored.append(step)

    async def read(self, response_id: str, after: int = -1) -> tuple[ResponseStep, ...]:
        return tuple(self._steps.get(response_id, ())[after + 1 :])

    async def keep_alive(self, response_id: str, until: float) -> None:
        record = self._records.get(response_id)
        if record is not None and record.running:
            self._records[response_id] = attrs.evolve(record, alive_until=until)

    async def interrupt(self, record: ResponseRecord, now: float) -> bool:
        stored = self._records.get(record.id)
        if stored is None or not lost_its_run(stored, now):
            return False
        self._records[record.id] = attrs.evolve(
            record, cancel_requested=stored.cancel_requested, alive_until=stored.alive_until
        )
        return True

    async def note(self, session: SessionKey, call_ids: Sequence[str]) -> None:
        self._paused.pop(session, None)
        if call_ids:
            self._paused[session] = tuple(call_ids)

    async def find(self, call_ids: Sequence[str], channel: str) -> SessionKey | None:
        wanted = set(call_ids)
        for session, waiting in reversed(self._paused.items()):
            if session.channel == channel and wanted.intersection(waiting):
                return session
        return None

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        wanted = set(sessions)
        gone = [
            r.id
            for r in self._records.values()
            if r.session in wanted and forgettable(r, made_before)
        ]
        for response_id in gone:
            await self.delete(response_id)
        for session in wanted:
            self._paused.pop(session, None)
        return len(gone)

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        keys = {r.session for r in self._records.values() if forgettable(r, made_before)}
        keys.update(self._paused)
        return tuple(sorted((k for k in keys if str(k).startswith(key_prefix)), key=str))


class InMemoryConversationStore:
    """A ConversationStore in a dict."""

    def __init__(self) -> None:
        self._records: dict[SessionKey, ConversationRecord] = {}

    async def put(self, record: ConversationRecord) -> None:
        self._records[record.session] = record

    async def get(self, session: SessionKey) -> ConversationRecord | None:
        return self._records.get(session)

    async def delete(self, session: SessionKey) -> bool:
        return self._records.pop(session, None) is not None

    async def records(self, channel: str) -> tuple[ConversationRecord, ...]:
        return tuple(r for r in self._records.values() if r.session.channel == channel)

    async def forget_records(self, sessions: Collection[SessionKey], made_before: float) -> int:
        old = self._old(made_before)
        gone = [key for key in sessions if key in old]
        for key in gone:
            del self._records[key]
        return len(gone)

    async def sessions_with_records(
        self, key_prefix: str, made_before: float
    ) -> tuple[SessionKey, ...]:
        return tuple(
            sorted((k for k in self._old(made_before) if str(k).startswith(key_prefix)), key=str)
        )

    def _old(self, made_before: float) -> set[SessionKey]:
        return {key for key, r in self._records.items() if r.created_at < made_before}
