"""``POST /v1/chat/completions`` served directly on ASGI, in front of the Quart app.

Every turn passes here, and Quart's per-request machinery (a Request object, two
contexts, hook dispatch, a werkzeug Response, two tasks per request) cost about 0.2 ms
of a turn: a fifth of the whole server's time per turn against an instant model
(``bench/proxy_overhead.py``). So this one endpoint reads its ASGI messages itself and
answers in one response body, while every other request, and every other method on
this path, goes on to Quart. The request id, API key and CORS rules are the same
functions Quart's hooks use (``middleware.py``), and errors the same bodies.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import Any, Final, cast
from urllib.parse import urlsplit

import anyio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from werkzeug.http import parse_options_header

from nanobot_api.adapters.http.answers import completion_json, json_bytes
from nanobot_api.adapters.http.errors import failure_body, failure_headers
from nanobot_api.adapters.http.ids import new_id
from nanobot_api.adapters.http.lifted import lift_data_urls
from nanobot_api.adapters.http.middleware import (
    REQUEST_ID,
    TASK_HEADER,
    allowed_origin,
    check_bearer,
    cors_headers,
    request_id,
)
from nanobot_api.adapters.http.multipart import multipart_boundary, read_multipart
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.http.streaming import SilentReply, stream_turn
from nanobot_api.adapters.http.wire import parse_chat_json, parse_form
from nanobot_api.domain.errors import (
    InvalidRequest,
    PayloadTooLarge,
    RequestTimedOut,
)
from nanobot_api.domain.ports import ChatTurns
from nanobot_api.domain.sessions import CHAT_ID_HEADERS, SESSION_HEADER, SessionHeaders
from nanobot_api.domain.turns import ChatRequest

CHAT_PATH: Final = "/v1/chat/completions"

# The ASGI messages are read as plain mappings here; the server's are cast at the door.
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# How long a non-streamed turn runs before its client leaving is watched for (see
# _DisconnectWatch).
WATCH_AFTER_S = 0.1
_DRAIN_MAX_BYTES = 8 * 1024 * 1024
_DRAIN_MAX_S = 2.0
_DRAIN_IDLE_S = 0.25
_JSON: Final = (b"content-type", b"application/json")
# Header names as the request's headers are keyed (see _headers), and as sent.
_REQUEST_ID_KEY: Final = REQUEST_ID.lower()
_SESSION_KEY: Final = SESSION_HEADER.lower()
_CHAT_ID_KEYS: Final = tuple(name.lower() for name in CHAT_ID_HEADERS)
_TASK_KEY: Final = TASK_HEADER.lower()
# Headers Open WebUI sends with ENABLE_FORWARD_USER_INFO_HEADERS=true (and only it).
_OPEN_WEBUI_KEYS: Final = ("x-openwebui-chat-id", "x-openwebui-user-id")
_REQUEST_ID: Final = _REQUEST_ID_KEY.encode()
_SESSION_ID: Final = _SESSION_KEY.encode()
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


class ClientGone(Exception):
    """The client closed the connection before its request was whole."""


class ChatEndpoint:
    """An ASGI app: chat completions POSTed here are answered; anything else goes on."""

    def __init__(self, inner: ASGIFramework, turns: ChatTurns, settings: HttpSettings) -> None:
        self._inner = inner
        self._turns = turns
        self._settings = settings

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or _route_path(scope["path"]) != scope.get("root_path", "") + CHAT_PATH
        ):
            await self._inner(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        extra = [(_REQUEST_ID, request_id(headers.get(_REQUEST_ID_KEY)).encode())]
        origin = allowed_origin(headers.get("origin"), self._settings)
        if origin is not None:
            extra += [(k.lower().encode(), v.encode()) for k, v in cors_headers(origin).items()]
        exchange = _Exchange(cast(Receive, receive), cast(Send, send), extra)
        try:
            await self._answer(headers, exchange)
        except ClientGone:
            return
        except Exception as error:
            if exchange.started:
                raise  # nothing more can be said on this response
            status, body = failure_body(error)  # a fault is logged there
            # Refused halfway through its body (too large, malformed, a file refused),
            # the client may still be sending: read on a little so it sees the answer.
            await exchange.discard_some()
            exchange.extra += [
                (name.lower().encode(), value.encode())
                for name, value in failure_headers(error).items()
            ]
            await exchange.respond_json(status, body)

    async def _answer(self, headers: Mapping[str, str], exchange: _Exchange) -> None:
        settings = self._settings
        if settings.api_key:
            check_bearer(headers.get("authorization", ""), settings.api_key)
        if _declared_length(headers) > settings.limits.max_request_bytes:
            # Refused before a byte of it is read, so the client need not send it.
            raise PayloadTooLarge(settings.limits.body_too_large)
        chat = await read_chat_request(headers, exchange.body(settings), settings)
        turns = self._turns
        prepared = await turns.prepare(chat)
        completion_id = new_id("chatcmpl-")
        created = int(time.time())
        exchange.extra.append((_SESSION_ID, prepared.session.session_id.encode()))
        # A stream writes all along, and must stop as soon as its client is gone; a
        # single answer is written once, at the end.
        watch_after_s = 0.0 if chat.stream else WATCH_AFTER_S
        async with exchange.watching_for_disconnect(watch_after_s):
            if not chat.stream:
                result = await turns.run(prepared, _DISCARD)
                answer = completion_json(
                    completion_id, created, turns.model, result.text, result.usage
                )
                await exchange.respond_json(200, answer)
                return
            await stream_turn(
                await exchange.start_stream(),
                turns,
                prepared,
                completion_id=completion_id,
                created=created,
                include_usage=chat.include_usage,
                keepalive_s=settings.sse_keepalive_s,
            )
            await exchange.end_stream()


async def read_chat_request(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], settings: HttpSettings
) -> ChatRequest:
    """The chat request in a body (JSON or multipart), or the error that refuses it."""
    session_headers = SessionHeaders(
        headers.get(_SESSION_KEY),
        headers.get(_CHAT_ID_KEYS[0]),
        headers.get(_CHAT_ID_KEYS[1]),
    )
    content_type = headers.get("content-type", "")
    if parse_options_header(content_type)[0].lower() == "multipart/form-data":
        boundary = multipart_boundary(content_type)
        form = await read_multipart(chunks, boundary, settings.limits)
        return parse_form(form.fields, form.uploads, session_headers)
    # One copy of the body, its large files decoded out of it and the body dropped
    # before the rest is parsed: a base64 upload then costs its bytes and its text,
    # not also a str of its text (see lifted.py).
    raw = bytearray()
    async for chunk in chunks:
        raw += chunk
    rest, lifted = lift_data_urls(raw, settings.limits)
    del raw
    try:
        body = json.loads(rest)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("Request body must be valid JSON") from exc
    del rest
    return parse_chat_json(
        body,
        settings.limits,
        history=settings.history,
        headers=session_headers,
        task=headers.get(_TASK_KEY),
        from_open_webui=any(key in headers for key in _OPEN_WEBUI_KEYS),
        lifted=lifted,
    )


class _Exchange:
    """One request's ASGI channel: its body in, its response out."""

    def __init__(self, receive: Receive, send: Send, extra: list[tuple[bytes, bytes]]) -> None:
        self._receive = receive
        self._send = send
        self.extra = extra
        self.started = False
        self._body_begun = False
        self._body_done = False

    async def body(self, settings: HttpSettings) -> AsyncIterator[bytes]:
        """The body's chunks, refused once they add up to more than the request limit."""
        self._body_begun = True
        limits = settings.limits
        seen = 0
        while not self._body_done:
            with anyio.move_on_after(settings.body_timeout_s) as waited:
                message = await self._receive()
            if waited.cancelled_caught:
                raise RequestTimedOut("Request body not received in time")
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            self._body_done = not message.get("more_body", False)
            seen += len(chunk)
            if seen > limits.max_request_bytes:
                raise PayloadTooLarge(limits.body_too_large)
            if chunk:
                yield chunk

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
            while drained < _DRAIN_MAX_BYTES and not self._body_done:
                with anyio.move_on_after(_DRAIN_IDLE_S) as idle:
                    message = await self._receive()
                if idle.cancelled_caught or message["type"] != "http.request":
                    return
                drained += len(message.get("body", b""))
                self._body_done = not message.get("more_body", False)

    def watching_for_disconnect(self, after_s: float) -> _DisconnectWatch:
        return _DisconnectWatch(self._receive, after_s)

    async def respond_json(self, status: int, payload: object) -> None:
        body = json_bytes(payload)
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *self.extra]
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})

    async def start_stream(self) -> Callable[[bytes], Awaitable[None]]:
        """Sends the headers of an event stream; returns how to write its events."""
        self.started = True
        headers = [*_SSE_HEADERS, *self.extra]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        return self._write_event

    async def _write_event(self, data: bytes) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    async def end_stream(self) -> None:
        await self._send({"type": "http.response.body", "body": b""})


class _DisconnectWatch:
    """Cancels the request's work if the client disconnects while it runs.

    One asyncio task waits on ``receive`` (which ASGI servers answer with
    ``http.disconnect`` once the client goes); a whole task group per request cost
    several times as much for the same effect. That task may start only once the work
    has run for ``after_s``: work done sooner has nothing left worth saving, and is
    kept as if the client had left just after it, while a turn of a real model takes
    longer and is cancelled within that time of its client leaving. (Against an
    instant model, a task for every request was about 7% of the server's time.)
    """

    def __init__(self, receive: Receive, after_s: float) -> None:
        self._receive = receive
        self._after_s = after_s
        self._scope = anyio.CancelScope()
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None

    def _start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._scope.cancel()

    async def __aenter__(self) -> None:
        self._scope.__enter__()
        if self._after_s > 0:
            self._timer = asyncio.get_running_loop().call_later(self._after_s, self._start)
        else:
            self._start()

    async def __aexit__(self, *exc_info: Any) -> bool:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
        if self._scope.__exit__(*exc_info):
            raise ClientGone  # the client left: the turn was cancelled on its account
        return False


def _route_path(path: str) -> str:
    """The path a request is routed by, as Quart routes it: a request sent to an
    absolute URL (``POST http://host/v1/...``, as some proxies send) keeps it whole."""
    return path if path.startswith("/") else urlsplit(path).path


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """The request's headers by lower-case name; the first of a repeated name wins."""
    headers: dict[str, str] = {}
    for name, value in raw:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


def _declared_length(headers: Mapping[str, str]) -> int:
    try:
        return int(headers.get("content-length", "0"))
    except ValueError:
        return 0  # the server has refused a malformed length before the app sees it


# The Reply of a non-streamed turn: its answer is read from the result.
_DISCARD: Final = SilentReply()
