"""Stage 7: turns at once, per key (``maxConcurrent``) and for the server
(``api.maxConcurrentTurns``), on the POSTs that run a turn; over either -> 429 with
Retry-After, at once rather than queued (a client retries, a queue would hide load)."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Final

from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.adapters.http.pipeline.routing import CHAT_PATH
from nanobot_api.adapters.http.tenancy import tenant_of
from nanobot_api.domain.ports import RequestLimiter

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

RESPONSES_PATH: Final = "/v1/responses"
TURN_PATHS: Final = frozenset({CHAT_PATH, RESPONSES_PATH})


class TurnLimitStage:
    """Holds a turn slot of the request's tenant while a turn-running POST runs."""

    def __init__(self, limiter: RequestLimiter, paths: Collection[str] = TURN_PATHS) -> None:
        self._limiter = limiter
        self._paths = frozenset(paths)

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        if exchange.method != "POST" or exchange.path not in self._paths:
            await call_next(exchange)
            return
        async with self._limiter.turn_slot(tenant_of(exchange.scope)):
            await call_next(exchange)
