"""Stage 7: turns at once, per key (``maxConcurrent``) and for the server
(``api.maxConcurrentTurns``), on the POSTs that run a turn; over either -> 429 with
Retry-After, at once rather than queued (a client retries, a queue would hide load)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, Final

from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.adapters.http.pipeline.routing import CHAT_PATH
from nanobot_api.adapters.http.tenancy import tenant_of
from nanobot_api.domain.ports import RequestLimiter

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

RESPONSES_PATH: Final = "/v1/responses"
TURN_PATHS: Final = frozenset({CHAT_PATH, RESPONSES_PATH})
_SCOPE_KEY: Final = "nanobot.turn_slot"


class TurnSlot:
    """The turn slot a request holds (a TurnHold): freed when the request ends, unless
    a turn that outlives it took it along."""

    def __init__(self, held: AsyncExitStack) -> None:
        self._held = held

    def keep(self) -> Callable[[], Awaitable[None]]:
        return self._held.pop_all().aclose


def turn_slot_of(scope: Mapping[str, Any]) -> TurnSlot | None:
    """The slot the request with this ASGI scope holds, if any limit on turns is set."""
    slot = scope.get(_SCOPE_KEY)
    return slot if isinstance(slot, TurnSlot) else None


class TurnLimitStage:
    """Holds a turn slot of the request's tenant while a turn-running POST runs."""

    def __init__(self, limiter: RequestLimiter, paths: Collection[str] = TURN_PATHS) -> None:
        self._limiter = limiter
        self._paths = frozenset(paths)

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        if exchange.method != "POST" or exchange.path not in self._paths:
            await call_next(exchange)
            return
        async with AsyncExitStack() as held:
            await held.enter_async_context(self._limiter.turn_slot(tenant_of(exchange.scope)))
            exchange.scope[_SCOPE_KEY] = TurnSlot(held)  # type: ignore[index]
            await call_next(exchange)
