"""Per-key requests per minute and turns at once, the server's turns, failed keys."""

from __future__ import annotations

import pytest

from nanobot_api.app.limits import KeyLimits, RequestLimits
from nanobot_api.domain.errors import RateLimited
from nanobot_api.domain.tenants import Tenant
from tests.fakes import InMemoryRequestRecords

ALICE, BOB = Tenant("alice"), Tenant("bob")


class Clock:
    def __init__(self, now: float = 120.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limits(clock: Clock, **overrides: int) -> RequestLimits:
    return RequestLimits(
        InMemoryRequestRecords(),
        keys={"alice": KeyLimits(rpm=2, max_concurrent=1), "bob": KeyLimits()},
        max_concurrent_turns=overrides.get("max_turns", 0),
        auth_failures_per_min=overrides.get("auth_failures", 3),
        turn_budget_s=60,
        clock=clock,
    )


async def test_a_key_over_its_rpm_waits_for_the_next_minute() -> None:
    clock = Clock(130.0)
    limiter = limits(clock)
    await limiter.count_request(ALICE)
    await limiter.count_request(ALICE)
    with pytest.raises(RateLimited) as refused:
        await limiter.count_request(ALICE)
    assert refused.value.retry_after_s == pytest.approx(50.0)
    for _ in range(10):
        await limiter.count_request(BOB)  # no limit, and not alice's count
    clock.now = 180.0
    await limiter.count_request(ALICE)


async def test_turns_at_once_per_key_and_for_the_server() -> None:
    limiter = limits(Clock(), max_turns=2)
    async with limiter.turn_slot(ALICE):
        with pytest.raises(RateLimited, match="key 'alice'"):
            async with limiter.turn_slot(ALICE):
                pass
        async with limiter.turn_slot(BOB):
            with pytest.raises(RateLimited, match="the server"):
                async with limiter.turn_slot(BOB):
                    pass
    async with limiter.turn_slot(ALICE):  # freed when the block ended
        pass


async def test_an_address_with_too_many_failed_keys_is_refused_before_comparing() -> None:
    limiter = limits(Clock(61.0))
    for _ in range(3):
        await limiter.check_address("10.0.0.9")
        await limiter.auth_failed("10.0.0.9")
    with pytest.raises(RateLimited) as refused:
        await limiter.check_address("10.0.0.9")
    assert refused.value.retry_after_s == pytest.approx(59.0)
    await limiter.check_address("10.0.0.10")
