"""Stage 5: what a request body may be: its size, its type, and how long it may take.

- A declared ``Content-Length`` over the request limit -> 413 before a byte is read;
  a body that grows past it as it arrives (chunked) -> 413 at that point.
- A body whose ``Content-Type`` is neither ``application/json`` nor
  ``multipart/form-data`` -> 415 (a ``text/plain`` body holding JSON is what a
  cross-site form sends without a preflight).
- The whole body must arrive within ``api.bodyTimeoutS`` of its first read -> else
  408, however slowly it trickles and whatever its ``Content-Length`` promised.

The checks on headers run here; the reading ones run as a route reads the body
(``exchange.body()``), so the chat route can refuse a file as soon as it shows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import anyio
from werkzeug.http import parse_options_header

from nanobot_api.adapters.http.pipeline.exchange import ClientGone, Exchange
from nanobot_api.domain.errors import PayloadTooLarge, RequestTimedOut, UnsupportedMediaType

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

BODY_TYPES: Final = frozenset({"application/json", "multipart/form-data"})
UNSUPPORTED_BODY: Final = "Content-Type must be application/json (or multipart/form-data)"


class BodyStage:
    """The request limit, body types and the body deadline."""

    def __init__(self, max_bytes: int, too_large: str, timeout_s: float) -> None:
        self._max_bytes = max_bytes
        self._too_large = too_large
        self._timeout_s = timeout_s

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        if exchange.has_body:
            if exchange.declared_length() > self._max_bytes:
                # Refused before a byte of it is read, so the client need not send it.
                raise PayloadTooLarge(self._too_large)
            if body_type(exchange.headers.get("content-type", "")) not in BODY_TYPES:
                raise UnsupportedMediaType(UNSUPPORTED_BODY, "Content-Type")
        exchange.body_reader = self._chunks
        await call_next(exchange)

    async def _chunks(self, exchange: Exchange) -> AsyncIterator[bytes]:
        loop_time = anyio.current_time
        deadline = loop_time() + self._timeout_s
        seen = 0
        receive = exchange.receive
        while not exchange.body_done:
            with anyio.move_on_after(deadline - loop_time()) as waited:
                message = await receive()
            if waited.cancelled_caught:
                raise RequestTimedOut(
                    f"Request body not received in time (api.bodyTimeoutS: {self._timeout_s:g}s)"
                )
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            exchange.body_done = not message.get("more_body", False)
            seen += len(chunk)
            if seen > self._max_bytes:
                raise PayloadTooLarge(self._too_large)
            if chunk:
                yield chunk


def body_type(content_type: str) -> str:
    return parse_options_header(content_type)[0].lower()
