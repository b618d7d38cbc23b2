"""Stage 4: the API key, on every route but the public ones."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.domain.errors import AuthenticationFailed

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next


class AuthenticationStage:
    """Refuses (401) a request without ``Authorization: Bearer <api_key>``."""

    def __init__(self, api_key: str) -> None:
        self._key = api_key.encode()

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        if self._key and not exchange.public:
            check_bearer(exchange.headers.get("authorization", ""), self._key)
        await call_next(exchange)


def check_bearer(header: str, api_key: bytes) -> None:
    scheme, _, token = header.partition(" ")
    given = token.strip().encode("utf-8", "replace")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given, api_key):
        raise AuthenticationFailed("Invalid API key")
