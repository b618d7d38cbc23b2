"""Session history kept in process memory: for tests and for agents that need no durability."""

from __future__ import annotations

import time

from nanobot_api.domain.conversation import History, TurnRecord, bounded_history
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.sessions import SessionKey


class InMemorySessionStore:
    """A SessionStore whose history lasts as long as the process."""

    def __init__(self) -> None:
        self._turns: dict[SessionKey, list[TurnRecord]] = {}
        self._times: dict[SessionKey, tuple[float, float]] = {}

    async def history(self, key: SessionKey, max_messages: int | None = None) -> History:
        turns = tuple(self._turns.get(key, ()))
        return turns if max_messages is None else bounded_history(turns, max_messages)

    async def commit(
        self, key: SessionKey, record: TurnRecord, *, replace_last: bool = False
    ) -> None:
        turns = self._turns.setdefault(key, [])
        now = time.time()
        self._times[key] = (self._times.get(key, (now, now))[0], now)
        if replace_last and turns:
            turns[-1] = record
        else:
            turns.append(record)

    async def last_turn(self, key: SessionKey) -> tuple[int, TurnRecord | None]:
        turns = self._turns.get(key, [])
        return len(turns), (turns[-1] if turns else None)

    async def clear(self, key: SessionKey) -> int:
        self._times.pop(key, None)
        return len(self._turns.pop(key, ()))

    async def sessions(self) -> dict[SessionKey, int]:
        """Every session with its count of turns."""
        return {key: len(turns) for key, turns in self._turns.items()}

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        """Every session of ``channel`` holding a turn, most recently changed first."""
        found = [
            SessionSummary(key, len(turns), *self._times[key])
            for key, turns in self._turns.items()
            if key.channel == channel and turns
        ]
        return tuple(sorted(found, key=lambda s: s.updated_at, reverse=True))
