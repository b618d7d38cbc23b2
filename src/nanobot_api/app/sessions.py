"""One turn at a time per session, in arrival order; sessions run in parallel."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Literal

import anyio

from nanobot_api.app.renewing import Renewing
from nanobot_api.domain.errors import LeaseLost, StorageUnavailable
from nanobot_api.domain.ports import SessionLeases
from nanobot_api.domain.sessions import Lease, SessionKey, session_busy

log = logging.getLogger(__name__)
BusyPolicy = Literal["queue", "reject"]


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

    def __contains__(self, key: object) -> bool:
        """Whether a turn of ``key`` holds or awaits its lock."""
        return key in self._locks


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


class SessionTurns:
    """One turn at a time per session, in arrival order, in this process and, given a
    store's ``leases``, across every process that shares the store.

    In this process a FIFO lock per key orders turns; the turn that holds it then takes
    the session's lease in the store (waiting its place in the store's queue behind
    other processes' turns), renews it every third of ``lease_s`` while the turn runs,
    and gives it back at the end. With ``busy="reject"`` a turn for a session that is
    running or awaiting another raises SessionBusy at once instead of waiting.
    """

    def __init__(
        self,
        leases: SessionLeases | None = None,
        *,
        busy: BusyPolicy = "queue",
        lease_s: float = 30.0,
    ) -> None:
        self._locks = SessionLocks()
        self._leases = leases
        self._busy: BusyPolicy = busy
        self._lease_s = lease_s

    def __len__(self) -> int:
        return len(self._locks)

    def hold(self, key: SessionKey) -> AbstractAsyncContextManager[Lease | None]:
        """``async with turns.hold(key) as lease:`` runs the block as the session's one
        turn; ``lease`` (None without leases) goes with the turn's commit."""
        if self._busy == "reject" and key in self._locks:
            raise session_busy(key)
        if self._leases is None:
            return self._locks.hold(key)
        return self._leased(key, self._leases)

    @asynccontextmanager
    async def _leased(self, key: SessionKey, leases: SessionLeases) -> AsyncIterator[Lease]:
        async with self._locks.hold(key):
            lease = await leases.acquire(key, wait=self._busy == "queue")
            renewing = Renewing(self._renew(leases, lease), self._lease_s / 3)
            try:
                yield lease
            finally:
                renewing.cancel()
                with anyio.CancelScope(shield=True):
                    try:
                        await leases.release(lease)
                    except StorageUnavailable:
                        # Unreleased, the lease runs out by itself within lease_s.
                        log.warning("session %s: its lease could not be released", key)

    async def _renew(self, leases: SessionLeases, lease: Lease) -> None:
        while True:
            try:
                await leases.renew(lease)
            except LeaseLost:
                # The commit will be refused (fencing): nothing of this turn is kept.
                log.warning("session %s: lease lost to another process", lease.key)
                return
            except StorageUnavailable:
                log.warning("session %s: lease not renewed (storage unavailable)", lease.key)
            await anyio.sleep(self._lease_s / 3)
