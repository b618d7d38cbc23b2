"""One turn at a time per session, in arrival order; sessions run in parallel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from nanobot_api.domain.sessions import SessionKey


class SessionLocks:
    """A FIFO lock per session key, kept only while some request holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[SessionKey, tuple[anyio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: SessionKey) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            # anyio's Lock wakes waiters first-come first-served, which gives arrival order.
            lock = anyio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)
