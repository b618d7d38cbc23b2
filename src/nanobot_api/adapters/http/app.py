"""The Quart application: every endpoint of SPEC.md over the ChatTurns port."""

from __future__ import annotations

import hmac
import json
import logging
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Final

import anyio
import attrs
from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_options_header

from nanobot_api.adapters.http.errors import status_of
from nanobot_api.adapters.http.streaming import TurnRunner, failure_body, stream_turn
from nanobot_api.adapters.http.wire import (
    completion_json,
    error_json,
    model_json,
    parse_chat_json,
    parse_form,
)
from nanobot_api.domain.attachments import MIB, UploadLimits
from nanobot_api.domain.errors import (
    AuthenticationFailed,
    InvalidRequest,
    NanobotError,
    NotFound,
)
from nanobot_api.domain.ports import ChatTurns
from nanobot_api.domain.turns import ChatRequest

log = logging.getLogger(__name__)

REQUEST_ID: Final = "X-Request-ID"
SESSION_ID: Final = "X-Session-Id"
_REQUEST_ID_MAX = 200


@attrs.frozen
class HttpSettings:
    """What the HTTP layer needs to know; the composition root fills it from config."""

    api_key: str = ""
    limits: UploadLimits = attrs.field(factory=UploadLimits)
    sse_keepalive_s: float = 15.0
    # Reading a large upload over a slow link may take a while; this bounds a stalled one.
    body_timeout_s: float = 120.0


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

    @app.before_request
    async def _identify_and_authenticate() -> None:
        given = request.headers.get(REQUEST_ID, "")
        valid = 0 < len(given) <= _REQUEST_ID_MAX and given.isprintable()
        g.request_id = given if valid else f"req_{secrets.token_hex(12)}"
        if settings.api_key and request.path != "/health":
            _check_bearer(request.headers.get("Authorization", ""), settings.api_key)

    @app.after_request
    async def _tag(response: Response) -> Response:
        response.headers[REQUEST_ID] = g.get("request_id") or f"req_{secrets.token_hex(12)}"
        return response

    @app.get("/health")
    async def health() -> Response:
        return _json({"status": "ok"})

    @app.get("/v1/models")
    async def list_models() -> Response:
        return _json({"object": "list", "data": [model_json(turns.model)]})

    @app.get("/v1/models/<path:model_id>")
    async def retrieve_model(model_id: str) -> Response:
        if model_id != turns.model:
            raise NotFound(f"The model '{model_id}' does not exist", "model")
        return _json(model_json(turns.model))

    @app.post("/v1/chat/completions")
    async def chat_completions() -> Response:
        chat = await _read_chat_request(settings.limits)
        prepared = await turns.prepare(chat)
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        headers = {SESSION_ID: prepared.session.session_id}
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
        return _json(answer, headers=headers)

    @app.errorhandler(NanobotError)
    async def _domain_error(error: NanobotError) -> Response:
        status, kind = status_of(error)
        return _json(error_json(error.message, kind, error.param, status), status)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        message = _HTTP_MESSAGES.get(status, error.description or "HTTP error")
        if status == 413:
            message = f"Request body exceeds {settings.limits.max_request_bytes // MIB}MB limit"
        kind = "server_error" if status >= 500 else "invalid_request_error"
        response = _json(error_json(message, kind, None, status), status)
        if status == 405 and error.get_headers():
            response.headers.update(dict(error.get_headers()))
            response.content_type = "application/json"
        return response

    @app.errorhandler(Exception)
    async def _fault(error: Exception) -> Response:
        log.exception("unhandled error", exc_info=error)
        status, body = failure_body(error)
        return _json(body, status)

    return app


_HTTP_MESSAGES: Final = {
    400: "Bad request",
    404: "Not found",
    405: "Method not allowed",
    408: "Request body not received in time",
}


def _json(payload: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status, headers, content_type="application/json")


def _check_bearer(header: str, api_key: str) -> None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    ):
        raise AuthenticationFailed("Invalid API key")


async def _read_chat_request(limits: UploadLimits) -> ChatRequest:
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype == "multipart/form-data":
        boundary = options.get("boundary")
        if not boundary:
            raise InvalidRequest("multipart/form-data needs a boundary")
        from nanobot_api.adapters.http.multipart import read_multipart

        form = await read_multipart(request.body, boundary.encode("latin-1"), limits)
        return parse_form(form.fields, form.uploads)
    raw = await request.get_data(as_text=False)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("Request body must be valid JSON") from exc
    return parse_chat_json(body, limits)


class _Discard:
    """The Reply of a non-streamed turn: the answer is read from the result."""

    async def send(self, delta: str) -> None:
        pass

    def add_usage(self, usage: object) -> None:
        pass

    def remember(self, message: object) -> None:
        pass


_DISCARD: Final = _Discard()
