"""Stage 1: the request id, the client's X-Request-ID if sensible, on every answer."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from nanobot_api.adapters.http.headers import REQUEST_ID
from nanobot_api.adapters.http.ids import new_id
from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.adapters.observability.logs import request_id_var

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

_KEY: Final = REQUEST_ID.lower()
_NAME: Final = _KEY.encode()
_MAX_CHARS = 200


class RequestIdStage:
    """Sets ``exchange.request_id``, adds it to the answer's headers, and puts it in
    the log context (every log line of the request carries it)."""

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        exchange.request_id = request_id(exchange.headers.get(_KEY))
        exchange.response_headers.append((_NAME, exchange.request_id.encode()))
        token = request_id_var.set(exchange.request_id)
        try:
            await call_next(exchange)
        finally:
            request_id_var.reset(token)


def request_id(given: str | None) -> str:
    """The client's X-Request-ID if it is a sensible one (printable ASCII, at most 200
    characters: it goes back out as a header), else a new id."""
    if given and len(given) <= _MAX_CHARS and given.isascii() and given.isprintable():
        return given
    return new_id("req_")
