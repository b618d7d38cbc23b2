"""``POST /v1/chat/completions``: the chat route, answered straight on ASGI.

The pipeline (``pipeline/``) has already applied every cross-cutting rule (request
id, origin, key, body limits and deadline) when :class:`ChatEndpoint` is called
with the request's :class:`~nanobot_api.adapters.http.pipeline.exchange.Exchange`;
it reads the body, runs the turn and writes the answer, as one JSON body or as
server-sent events. Why this route is not a Quart one: docs/discussion/chat-endpoint.md.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from functools import partial
from typing import Any, Final

import anyio
import attrs

from nanobot_api.adapters.http.answers import completion_json
from nanobot_api.adapters.http.headers import (
    MESSAGE_ID_HEADERS,
    OPEN_WEBUI_HEADERS,
    SESSION_HEADER,
    TASK_HEADER,
    TRUNCATED_HEADER,
    session_headers,
    truncated_files,
)
from nanobot_api.adapters.http.ids import new_id
from nanobot_api.adapters.http.lifted import lift_data_urls
from nanobot_api.adapters.http.multipart import multipart_boundary, read_multipart
from nanobot_api.adapters.http.pipeline.body import body_type
from nanobot_api.adapters.http.pipeline.exchange import ClientGone, Exchange, Receive
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.http.streaming import SilentReply, stream_turn
from nanobot_api.adapters.http.tenancy import tenant_of
from nanobot_api.adapters.http.wire import load_json_body, parse_chat_json, parse_form
from nanobot_api.domain.branches import MessageIds
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.ports import ChatTurns
from nanobot_api.domain.sessions import SessionHeaders
from nanobot_api.domain.turns import ChatRequest

# How long a non-streamed turn runs before its client leaving is watched for (see
# _DisconnectWatch).
WATCH_AFTER_S = 0.1
_TASK_KEY: Final = TASK_HEADER.lower()
_OPEN_WEBUI_KEYS: Final = tuple(name.lower() for name in OPEN_WEBUI_HEADERS)
_ID_KEYS: Final = tuple(name.lower() for name in MESSAGE_ID_HEADERS)
# Bodies this large are parsed off the event loop (a 60 MB one took seconds on it).
OFF_LOOP_BYTES = 512 * 1024
_SESSION_ID: Final = SESSION_HEADER.lower().encode()
_TRUNCATED: Final = TRUNCATED_HEADER.lower().encode()


class ChatEndpoint:
    """Answers a chat completion request that has passed the pipeline."""

    def __init__(self, turns: ChatTurns, settings: HttpSettings) -> None:
        self._turns = turns
        self._settings = settings

    async def __call__(self, exchange: Exchange) -> None:
        settings = self._settings
        chat = await read_chat_request(exchange.headers, exchange.body(), settings)
        # The key's tenant owns the session: the same id under another key is another one.
        chat = attrs.evolve(chat, session=tenant_of(exchange.scope).scope(chat.session))
        turns = self._turns
        prepared = await turns.prepare(chat)
        completion_id = new_id("chatcmpl-")
        created = int(time.time())
        exchange.response_headers.append((_SESSION_ID, prepared.session.session_id.encode()))
        cut = truncated_files(prepared.documents)
        if cut is not None:
            exchange.response_headers.append((_TRUNCATED, cut.encode()))
        # A stream writes all along, and must stop as soon as its client is gone; a
        # single answer is written once, at the end.
        watch_after_s = 0.0 if chat.stream else WATCH_AFTER_S
        async with _DisconnectWatch(exchange.receive, watch_after_s):
            if not chat.stream:
                result = await turns.run(prepared, _DISCARD)
                answer = completion_json(
                    completion_id,
                    created,
                    turns.model,
                    result.text,
                    result.usage,
                    tool_calls=result.tool_calls,
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
                tool_events=chat.tool_events,
                keepalive_s=settings.sse_keepalive_s,
            )
            await exchange.end_stream()


async def read_chat_request(
    headers: Mapping[str, str], chunks: AsyncIterator[bytes], settings: HttpSettings
) -> ChatRequest:
    """The chat request in a body (JSON or multipart), or the error that refuses it."""
    sessions = session_headers(headers)
    content_type = headers.get("content-type", "")
    if body_type(content_type) == "multipart/form-data":
        boundary = multipart_boundary(content_type)
        form = await read_multipart(chunks, boundary, settings.limits)
        return parse_form(form.fields, form.uploads, sessions)
    raw = bytearray()
    async for chunk in chunks:
        raw += chunk
    size = len(raw)
    task = _Task(
        headers.get(_TASK_KEY),
        any(key in headers for key in _OPEN_WEBUI_KEYS),
        MessageIds.from_headers(*(headers.get(key) for key in _ID_KEYS)),
    )
    parse = partial(_parse_json, [raw], settings, sessions, task)
    del raw  # the holder list is the body's last reference: the parse may drop it
    if size < OFF_LOOP_BYTES:
        return parse()
    # A large body is scanned and parsed on a worker thread: the event loop keeps
    # serving every other request meanwhile (both release nothing else it needs).
    return await anyio.to_thread.run_sync(parse)


@attrs.frozen
class _Task:
    """What the headers say about a front end's request: the task header, whether Open
    WebUI's forwarding headers came (see ``domain.front_ends.auxiliary_task``), and
    the recipe's message ids (``domain.branches``)."""

    header: str | None
    from_open_webui: bool
    ids: MessageIds


def _parse_json(
    holder: list[bytearray], settings: HttpSettings, sessions: SessionHeaders, task: _Task
) -> ChatRequest:
    # One copy of the body, its large files decoded out of it and the body dropped
    # before the rest is parsed: a base64 upload then costs its bytes and its text,
    # not also a str of its text (see lifted.py).
    rest, lifted = lift_data_urls(holder.pop(), settings.limits)
    body = load_json_body(rest)
    del rest
    try:
        return parse_chat_json(
            body,
            settings.limits,
            history=settings.history,
            headers=sessions,
            task=task.header,
            from_open_webui=task.from_open_webui,
            ids=task.ids,
            lifted=lifted,
        )
    except RecursionError as exc:
        raise InvalidRequest("Request body is nested too deeply") from exc


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


# The Reply of a non-streamed turn: its answer is read from the result.
_DISCARD: Final = SilentReply()
