"""What the SQLite and PostgreSQL session leases share: taking a place in a session's
queue, then polling until the session is this turn's (see postgres_leases for the
rules), and giving the place up if the wait is cancelled."""

from __future__ import annotations

import abc

import anyio

from nanobot_api.domain.sessions import Lease, SessionKey, session_busy, stalled

# Waiting for a session polls: first soon (a turn ending), then less often.
POLL_FIRST_S = 0.005
POLL_MAX_S = 0.1
# What a store's take answers for a place that expired (its process stalled).
STALLED = -1


class PolledLeases(abc.ABC):
    """``acquire`` of SessionLeases over three store operations a subclass provides."""

    @abc.abstractmethod
    async def _join(self, key: str) -> tuple[int, int | None]:
        """A new place at the end of the queue, and the token if the session is free."""

    @abc.abstractmethod
    async def _take(self, key: str, ticket: int) -> int | None:
        """The token if ``ticket`` may run now; None to wait; STALLED."""

    @abc.abstractmethod
    async def _leave(self, ticket: int) -> None:
        """Gives up a place that never took the session."""

    async def acquire(self, key: SessionKey, *, wait: bool = True) -> Lease:
        """Waits its turn in the session's queue (see SessionLeases)."""
        name = str(key)
        ticket, token = await self._join(name)
        try:
            token = await self._wait(key, name, ticket, token, wait)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._leave(ticket)
            raise
        return Lease(key, token, ticket)

    async def _wait(
        self, key: SessionKey, name: str, ticket: int, token: int | None, wait: bool
    ) -> int:
        pause = POLL_FIRST_S
        while token is None:
            if not wait:
                raise session_busy(key)
            await anyio.sleep(pause)
            pause = min(pause * 2, POLL_MAX_S)
            token = await self._take(name, ticket)
        if token == STALLED:
            raise stalled()
        return token
