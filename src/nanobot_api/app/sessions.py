"""One turn at a time per session, in arrival order; sessions run in parallel."""

from __future__ import annotations

from types import TracebackType

import anyio

from nanobot_api.domain.sessions import SessionKey


class SessionLocks:
    """A FIFO lock per session key, kept only while some request holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[SessionKey, tuple[anyio.Lock, int]] = {}

    def hold(self, key: SessionKey) -> _Held:
        """``async with locks.hold(key):`` runs the block alone for that session."""
        return _Held(self, key)

    def _join(self, key: SessionKey) -> anyio.Lock:
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            # anyio's Lock wakes waiters first-come first-served, which gives arrival
            # order; fast_acquire skips the yield to the loop when nobody else holds it.
            lock = anyio.Lock(fast_acquire=True)
        self._locks[key] = (lock, users + 1)
        return lock

    def _leave(self, key: SessionKey) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)

    def __len__(self) -> int:
        return len(self._locks)


class _Held:
    # A class rather than an asynccontextmanager: this runs on every turn, and the
    # generator machinery cost more than the lock.
    __slots__ = ("_key", "_lock", "_locks")

    def __init__(self, locks: SessionLocks, key: SessionKey) -> None:
        self._locks = locks
        self._key = key

    async def __aenter__(self) -> None:
        self._lock = self._locks._join(self._key)
        try:
            await self._lock.acquire()
        except BaseException:
            self._locks._leave(self._key)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()
        self._locks._leave(self._key)
