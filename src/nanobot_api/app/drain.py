"""Stopping without losing a turn: the server drains before it stops.

On the first SIGTERM (or SIGINT) the gate closes: readiness answers 503, a new turn is
refused with ServerShuttingDown (503, ``Retry-After``), and the turns in flight get
``api.shutdownGraceS`` to finish. Those still running then are cancelled; each ends
as a failure (its stream gets an error event, its answer a 503) and commits nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio

from nanobot_api.domain.errors import ServerShuttingDown

log = logging.getLogger(__name__)

# What a refused client is told to wait: about as long as a restart takes.
RETRY_AFTER_S: Final = 5.0


class TurnGate:
    """Counts the turns in flight and closes to new ones when the server drains."""

    def __init__(self) -> None:
        self._scopes: set[anyio.CancelScope] = set()
        self._idle = anyio.Event()
        self._idle.set()
        self.draining = False

    @property
    def in_flight(self) -> int:
        return len(self._scopes)

    def admit(self) -> None:
        """Refuses a new turn while draining (ServerShuttingDown)."""
        if self.draining:
            raise ServerShuttingDown(
                "The server is shutting down; retry on another instance or shortly",
                retry_after_s=RETRY_AFTER_S,
            )

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        """Runs the block as a turn in flight; one the drain cancels ends in
        ServerShuttingDown instead of a bare cancellation."""
        self.admit()
        scope = anyio.CancelScope()
        self._scopes.add(scope)
        self._idle = anyio.Event() if len(self._scopes) == 1 else self._idle
        try:
            with scope:
                yield
        finally:
            self._scopes.discard(scope)
            if not self._scopes:
                self._idle.set()
        if scope.cancelled_caught:
            raise ServerShuttingDown(
                "The server shut down before this turn finished; nothing was kept",
                retry_after_s=RETRY_AFTER_S,
            )

    async def drain(self, grace_s: float) -> None:
        """Closes the gate, waits up to ``grace_s`` for the turns in flight, then cancels
        the rest and waits for them to end."""
        self.draining = True
        if self._scopes:
            log.info("draining: %d turn(s) in flight, up to %gs to finish", self.in_flight, grace_s)
        with anyio.move_on_after(grace_s):
            await self._idle.wait()
        self.cancel_all()
        await self._idle.wait()

    def cancel_all(self) -> None:
        """Cancels every turn in flight now (the grace is over, or a second signal)."""
        if self._scopes:
            log.warning("cancelling %d turn(s) still running", len(self._scopes))
        for scope in list(self._scopes):
            scope.cancel()
