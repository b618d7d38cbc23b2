"""The Quart application: every endpoint of SPEC.md over the ChatTurns port."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import Final

import anyio
from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

from nanobot_api.adapters.http.answers import completion_json, model_json
from nanobot_api.adapters.http.ids import new_id
from nanobot_api.adapters.http.lifted import lift_data_urls
from nanobot_api.adapters.http.middleware import (
    TASK_HEADER,
    install_error_handlers,
    install_request_hooks,
    json_response,
)
from nanobot_api.adapters.http.multipart import multipart_boundary, read_multipart
from nanobot_api.adapters.http.openapi import install_openapi
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.http.streaming import TurnRunner, stream_turn
from nanobot_api.adapters.http.wire import parse_chat_json, parse_form
from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.errors import InvalidRequest, NotFound, PayloadTooLarge
from nanobot_api.domain.ports import ChatTurns
from nanobot_api.domain.sessions import CHAT_ID_HEADERS, SESSION_HEADER, SessionHeaders
from nanobot_api.domain.turns import ChatRequest

log = logging.getLogger(__name__)


_DRAIN_MAX_BYTES = 8 * 1024 * 1024
_DRAIN_MAX_S = 2.0
_DRAIN_IDLE_S = 0.25


def create_quart_app(turns: ChatTurns, settings: HttpSettings) -> Quart:
    """The HTTP API in front of ``turns``.

    Streamed turns run in a task group the app opens while serving, so run it under
    an ASGI server (Hypercorn) or, in tests, inside ``async with app.test_app()``.
    """
    app = Quart("nanobot_api")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.limits.max_request_bytes,
        BODY_TIMEOUT=settings.body_timeout_s,
        # Streams end when their turn does (bounded by api.timeout), not by Quart's clock.
        RESPONSE_TIMEOUT=None,
        JSON_SORT_KEYS=False,
    )
    runner = TurnRunner()

    @app.while_serving
    async def _serve_turns() -> AsyncGenerator[None, None]:
        async with anyio.create_task_group() as group:
            runner.attach(group)
            yield
            runner.attach(None)
            group.cancel_scope.cancel()

    install_request_hooks(app, settings)
    install_error_handlers(app, settings)
    install_openapi(app, turns.model, settings)

    @app.get("/health")
    async def health() -> Response:
        return json_response({"status": "ok"})

    @app.get("/v1/models")
    async def list_models() -> Response:
        return json_response({"object": "list", "data": [model_json(turns.model)]})

    @app.get("/v1/models/<path:model_id>")
    async def retrieve_model(model_id: str) -> Response:
        if model_id != turns.model:
            raise NotFound(f"The model '{model_id}' does not exist", "model")
        return json_response(model_json(turns.model))

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Response:
        try:
            chat = await _read_chat_request(settings)
        except PayloadTooLarge:
            await _discard_some(request.body)
            raise
        prepared = await turns.prepare(chat)
        completion_id = new_id("chatcmpl-")
        created = int(time.time())
        headers = {SESSION_HEADER: prepared.session.session_id}
        if chat.stream:
            body = stream_turn(
                runner,
                turns,
                prepared,
                completion_id=completion_id,
                created=created,
                include_usage=chat.include_usage,
                keepalive_s=settings.sse_keepalive_s,
            )
            headers |= {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
            return Response(body, content_type="text/event-stream", headers=headers)
        result = await turns.run(prepared, _DISCARD)
        answer = completion_json(completion_id, created, turns.model, result.text, result.usage)
        return json_response(answer, headers=headers)

    return app


async def _read_chat_request(settings: HttpSettings) -> ChatRequest:
    headers = SessionHeaders(
        request.headers.get(SESSION_HEADER),
        request.headers.get(CHAT_ID_HEADERS[0]),
        request.headers.get(CHAT_ID_HEADERS[1]),
    )
    content_type = request.headers.get("Content-Type", "")
    chunks = _bounded(request.body, settings.limits)
    if parse_options_header(content_type)[0].lower() == "multipart/form-data":
        boundary = multipart_boundary(content_type)
        form = await read_multipart(chunks, boundary, settings.limits)
        return parse_form(form.fields, form.uploads, headers)
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
        headers=headers,
        task=request.headers.get(TASK_HEADER),
        lifted=lifted,
    )


async def _discard_some(body: AsyncIterable[bytes]) -> None:
    """Reads on, and drops, a little of a refused body's rest.

    A client still sending when the 413 is written and the connection closed may see
    only the reset. Reading a bounded amount more, while it keeps coming, lets most
    clients finish their write and read the answer; nothing read is kept.
    """
    drained = 0
    chunks = aiter(body)
    with anyio.move_on_after(_DRAIN_MAX_S):
        while drained < _DRAIN_MAX_BYTES:
            with anyio.move_on_after(_DRAIN_IDLE_S) as idle:
                try:
                    drained += len(await anext(chunks))
                except (StopAsyncIteration, HTTPException):
                    return
            if idle.cancelled_caught:
                return


async def _bounded(body: AsyncIterable[bytes], limits: UploadLimits) -> AsyncIterator[bytes]:
    """The body's chunks, refused as soon as they add up to more than the request limit.

    Quart checks a declared Content-Length itself; a chunked body is counted here.
    """
    seen = 0
    async for chunk in body:
        seen += len(chunk)
        if seen > limits.max_request_bytes:
            raise PayloadTooLarge(limits.body_too_large)
        yield chunk


class _Discard:
    """The Reply of a non-streamed turn: the answer is read from the result."""

    async def send(self, delta: str) -> None:
        pass

    def add_usage(self, usage: object) -> None:
        pass

    def remember(self, message: object) -> None:
        pass


_DISCARD: Final = _Discard()
