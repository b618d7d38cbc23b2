"""Session history kept in process memory: for tests and for agents that need no durability."""

from __future__ import annotations

import time
from collections.abc import Sequence

import attrs

from nanobot_api.domain.branches import NO_IDS, MessageIds, StoredTurn, active_branch
from nanobot_api.domain.conversation import History, TurnRecord, bounded_history
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.sessions import Lease, SessionKey


class InMemorySessionStore:
    """A SessionStore whose history lasts as long as the process."""

    def __init__(self) -> None:
        self._turns: dict[SessionKey, list[StoredTurn]] = {}
        # key -> (first turn stored, latest turn stored), as time.time()
        self._times: dict[SessionKey, tuple[float, float]] = {}

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        turns = tuple(t.record for t in active_branch(self._turns.get(key, ())))
        return turns if max_messages is None else bounded_history(turns, max_messages)

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, lease: Lease | None = None
    ) -> None:
        # No leases here: one process, whose ChatService orders each session's turns.
        turns = self._turns.setdefault(key, [])
        active = active_branch(turns)
        parent = active[-1].no if active else None
        turns.append(StoredTurn(_next_no(turns), parent, record))
        self._touch(key)

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        active = active_branch(self._turns.get(key, ()))
        return len(active), (active[-1].record if active else None)

    async def turns(self, key: SessionKey) -> tuple[StoredTurn, ...]:
        return tuple(self._turns.get(key, ()))

    async def commit_branch(
        self,
        key: SessionKey,
        kept: Sequence[int],
        imported: Sequence[TurnRecord],
        record: TurnRecord,
        ids: MessageIds,
        *,
        lease: Lease | None = None,
    ) -> None:
        keep = frozenset(kept)
        turns = [attrs.evolve(t, superseded=t.no not in keep) for t in self._turns.get(key, ())]
        parent = max(keep, default=None)
        for index, each in enumerate((*imported, record)):
            no = _next_no(turns)
            last = index == len(imported)
            turns.append(StoredTurn(no, parent, each, ids=ids if last else NO_IDS))
            parent = no
        self._turns[key] = turns
        self._touch(key)

    def _touch(self, key: SessionKey) -> None:
        now = time.time()
        self._times[key] = (self._times.get(key, (now, now))[0], now)

    async def clear(self, key: SessionKey) -> int:
        self._times.pop(key, None)
        return len(self._turns.pop(key, ()))

    async def forget_idle(self, key_prefix: str, idle_since: float) -> tuple[SessionKey, ...]:
        idle = sorted(
            (
                key
                for key, (_, latest) in self._times.items()
                if str(key).startswith(key_prefix) and latest < idle_since
            ),
            key=str,
        )
        for key in idle:
            await self.clear(key)
        return tuple(idle)

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session with its count of active turns."""
        return {key: len(active_branch(turns)) for key, turns in self._turns.items()}

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` holding a turn, most recently changed first."""
        found = [
            SessionSummary(key, len(active_branch(turns)), *self._times[key])
            for key, turns in self._turns.items()
            if key.channel == channel and turns
        ]
        return tuple(sorted(found, key=lambda s: s.updated_at, reverse=True))


def _next_no(turns: Sequence[StoredTurn]) -> int:
    return turns[-1].no + 1 if turns else 1
