"""One request as every pipeline stage sees it: its scope and headers, the headers
its answer will carry, its body (under the limits the body stage sets) and the ways
to answer it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import anyio

from nanobot_api.adapters.http.answers import json_bytes

# ASGI messages are read as plain mappings here; the server's are cast at the door.
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_DRAIN_MAX_BYTES = 8 * 1024 * 1024
_DRAIN_MAX_S = 2.0
_DRAIN_IDLE_S = 0.25
_JSON: Final = (b"content-type", b"application/json")
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The client closed the connection before its request was whole."""


BodyReader = Callable[["Exchange"], AsyncIterator[bytes]]
"""How a body's chunks are received: the body stage's, under its limit and deadline."""


class Exchange:
    """One HTTP request in the pipeline, and its answer.

    ``headers`` are keyed by lower-case name, the first of a repeated name winning,
    values decoded as UTF-8 (as browsers and SDKs send non-ASCII ones) or, failing
    that, Latin-1. ``response_headers`` grow as stages pass (request id, CORS, the
    session) and go out with whatever answer the request gets, from any route.
    ``path`` is the path the request is routed by (the root path taken off, an
    absolute-form target reduced to its path).
    """

    __slots__ = (
        "_body_begun",
        "_send",
        "body_done",
        "body_reader",
        "headers",
        "method",
        "path",
        "public",
        "receive",
        "request_id",
        "response_headers",
        "scope",
        "status",
    )

    def __init__(self, scope: Mapping[str, Any], receive: Receive, send: Send, path: str) -> None:
        self.scope = scope
        self.path = path
        self.method: str = scope["method"]
        self.headers = read_headers(scope["headers"])
        self.receive = receive
        self._send = send
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.request_id = ""
        self.public = False  # a route that never needs a key (set by routing rules)
        # The status of the answer's start once sent (read by the access log; kept here
        # rather than by a wrapper of send, which would cost a frame per streamed event).
        self.status: int | None = None
        self.body_reader: BodyReader | None = None
        self._body_begun = False
        self.body_done = False

    # ---- the body ----------------------------------------------------------------

    @property
    def has_body(self) -> bool:
        """Whether the request says a body follows (a length above 0, or chunked)."""
        length = self.headers.get("content-length")
        if length is not None:
            return length.strip() not in ("", "0")
        return "transfer-encoding" in self.headers

    def declared_length(self) -> int:
        try:
            return int(self.headers.get("content-length", "0"))
        except ValueError:
            return 0  # the server refuses a malformed length before the app sees it

    def body(self) -> AsyncIterator[bytes]:
        """The body's chunks, under the body stage's limit and deadline."""
        if self.body_reader is None:
            raise RuntimeError("no body stage in the pipeline")
        self._body_begun = True
        return self.body_reader(self)

    async def read_body(self) -> bytes:
        return b"".join([chunk async for chunk in self.body()])

    def replay_body(self, body: bytes) -> None:
        """After a stage has read the whole body, the route reads ``body`` again."""

        async def replayed(_: Exchange) -> AsyncIterator[bytes]:
            if body:
                yield body

        self.body_reader = replayed

    def reroute(self, method: str, target: str) -> None:
        """Routes the request on as ``method target`` (a route path, maybe a query; no
        body): a stage answers with what that route answers now."""
        path, _, query = target.partition("?")
        root = str(self.scope.get("root_path", ""))
        self.scope = {
            **self.scope,
            "method": method,
            "path": root + path,
            "raw_path": (root + path).encode(),
            "query_string": query.encode(),
        }
        self.method = method
        self.path = path
        self.replay_body(b"")

    @property
    def started(self) -> bool:
        """Whether the answer's start has been sent (its status can no longer change)."""
        return self.status is not None

    def wrap_send(self, wrapper: Callable[[Send], Send]) -> None:
        """Puts ``wrapper(send)`` in the way of every ASGI message the answer sends
        (an idempotency record keeps its body)."""
        self._send = wrapper(self._send)

    async def discard_some(self) -> None:
        """Reads on, and drops, a little of a refused body's rest.

        A client still sending when the error is written and the connection closed may
        see only the reset. Reading a bounded amount more, while it keeps coming, lets
        most clients finish their write and read the answer; nothing read is kept. A
        body never begun (refused by its headers) is left alone: it may never come.
        """
        if not self._body_begun:
            return
        drained = 0
        with anyio.move_on_after(_DRAIN_MAX_S):
            while drained < _DRAIN_MAX_BYTES and not self.body_done:
                with anyio.move_on_after(_DRAIN_IDLE_S) as idle:
                    message = await self.receive()
                if idle.cancelled_caught or message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                self.body_done = not message.get("more_body", False)

    # ---- the answer --------------------------------------------------------------

    async def send(self, message: Message) -> None:
        """Sends an ASGI message; the response's start gets ``response_headers``."""
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            message = {**message, "headers": [*message["headers"], *self.response_headers]}
        await self._send(message)

    async def respond_json(self, status: int, payload: object) -> None:
        body = json_bytes(payload)
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *self.response_headers]
        self.status = status
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def respond_empty(self, status: int, headers: Iterable[tuple[bytes, bytes]]) -> None:
        self.status = status
        sent = [*headers, *self.response_headers, (b"content-length", b"0")]
        await self._send({"type": "http.response.start", "status": status, "headers": sent})
        await self._send({"type": "http.response.body", "body": b""})

    async def start_stream(self) -> Callable[[bytes], Awaitable[None]]:
        """Sends the headers of an event stream; returns how to write its events."""
        self.status = 200
        headers = [*_SSE_HEADERS, *self.response_headers]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        return self._write_event

    async def _write_event(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end_stream(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})


def read_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Headers by lower-case name; the first of a repeated name wins."""
    headers: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        if key not in headers:
            headers[key] = _text(value)
    return headers


def _text(value: bytes) -> str:
    if value.isascii():
        return value.decode("ascii")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")
