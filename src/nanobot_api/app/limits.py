"""Who may do how much: per-key requests per minute and turns at once, the server's
turns at once, and failed keys per client address. Every refusal is RateLimited (429)
with the seconds until it would be allowed.

Requests per minute are counted in fixed one-minute windows; turns at once are slots
leased for at most a turn's whole budget, so a worker that dies mid-turn frees its
slots when the lease runs out; with ``slot_lease_s``, slots are leased that long and
renewed while their turns run, so a dead worker's slots free within it. Both live in
the LimitCounters store, so every worker sharing the storage sees the same counts.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager

import anyio
import attrs

from nanobot_api.app.renewing import Renewing
from nanobot_api.domain.errors import RateLimited, StorageUnavailable
from nanobot_api.domain.ports import LimitCounters
from nanobot_api.domain.tenants import Tenant

log = logging.getLogger(__name__)

WINDOW_S = 60.0
# A slot's holder frees it when the turn ends; this only bounds a dead holder's slot.
_SLOT_SLACK_S = 30.0
_BUSY_RETRY_S = 1.0


@attrs.frozen
class KeyLimits:
    """One key's limits; 0 means none."""

    rpm: int = 0
    max_concurrent: int = 0


class RequestLimits:
    """The limits of ``operations.md``, over a LimitCounters store."""

    def __init__(
        self,
        counters: LimitCounters,
        *,
        keys: Mapping[str, KeyLimits],
        max_concurrent_turns: int,
        auth_failures_per_min: int,
        turn_budget_s: float,
        clock: Callable[[], float] = time.time,
        slot_lease_s: float | None = None,
    ) -> None:
        self._counters = counters
        self._keys = keys
        self._max_turns = max_concurrent_turns
        self._auth_failures = auth_failures_per_min
        self._renews = slot_lease_s is not None
        self._lease_s = turn_budget_s + _SLOT_SLACK_S if slot_lease_s is None else slot_lease_s
        self._clock = clock

    @property
    def limits_turns(self) -> bool:
        return self._max_turns > 0 or any(k.max_concurrent for k in self._keys.values())

    def _window(self) -> tuple[float, float]:
        """The current window's start, and the seconds until the next one."""
        now = self._clock()
        start = math.floor(now / WINDOW_S) * WINDOW_S
        return start, start + WINDOW_S - now

    async def check_address(self, address: str) -> None:
        """Refuses an address that sent too many failed keys this minute, before any
        key is compared."""
        start, left = self._window()
        if await self._counters.count(f"auth:{address}", start) >= self._auth_failures:
            raise RateLimited(
                "Too many failed API keys from this address; try again later",
                retry_after_s=left,
            )

    async def auth_failed(self, address: str) -> None:
        """Counts a failed key from ``address``."""
        start, _ = self._window()
        await self._counters.add(f"auth:{address}", start)

    async def count_request(self, tenant: Tenant) -> None:
        """Counts a request of ``tenant``; refuses it over the key's ``rpm``."""
        rpm = self._keys.get(tenant.label, KeyLimits()).rpm
        if not rpm:
            return
        start, left = self._window()
        if await self._counters.add(f"rpm:{tenant.label}", start) > rpm:
            raise RateLimited(
                f"Rate limit reached for key '{tenant.label}': {rpm} requests per minute",
                retry_after_s=left,
            )

    @asynccontextmanager
    async def turn_slot(self, tenant: Tenant) -> AsyncIterator[None]:
        """Holds a turn's place under the key's ``maxConcurrent`` and the server's
        ``maxConcurrentTurns`` while the block runs; refuses at once when either is full."""
        token = secrets.token_hex(8)
        limits: dict[str, int] = {}  # the slots taken
        renewing: Renewing | None = None
        per_key = self._keys.get(tenant.label, KeyLimits()).max_concurrent
        wanted = [(f"turns:{tenant.label}", per_key, f"key '{tenant.label}'")]
        wanted.append(("turns:*", self._max_turns, "the server"))
        try:
            for bucket, limit, whose in wanted:
                if not limit:
                    continue
                now = self._clock()
                if not await self._counters.take_slot(
                    bucket, token, limit, now=now, lease_s=self._lease_s
                ):
                    raise RateLimited(
                        f"Too many turns at once for {whose} (at most {limit}); retry shortly",
                        retry_after_s=_BUSY_RETRY_S,
                    )
                limits[bucket] = limit
            # Its own task once due, not a task group: the slot may be kept past the
            # request by a turn that outlives it (a background response), and freed
            # from that turn.
            if self._renews and limits:
                renewing = Renewing(self._renew(limits, token), self._lease_s / 3)
            yield
        finally:
            if renewing is not None:
                renewing.cancel()
            with anyio.CancelScope(shield=True):  # a cancelled turn still frees its place
                for bucket in limits:
                    await self._counters.free_slot(bucket, token)

    async def _renew(self, limits: Mapping[str, int], token: str) -> None:
        """Takes the slots again now and every third of their lease from then on (their
        holder may); started a third of a lease after they were taken (``Renewing``)."""
        while True:
            for bucket, limit in limits.items():
                try:
                    await self._counters.take_slot(
                        bucket, token, limit, now=self._clock(), lease_s=self._lease_s
                    )
                except StorageUnavailable:  # the next renewal may get through
                    log.warning("turn slot %s not renewed (storage unavailable)", bucket)
            await anyio.sleep(self._lease_s / 3)
