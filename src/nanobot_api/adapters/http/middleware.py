"""What every request passes through: request ids, API key, CORS, and error bodies."""

from __future__ import annotations

import hmac
from typing import Final

import werkzeug.exceptions
from quart import Quart, Response, g, request
from werkzeug.exceptions import HTTPException

from nanobot_api.adapters.http.answers import error_json, json_bytes
from nanobot_api.adapters.http.chat_page import is_page_path
from nanobot_api.adapters.http.errors import failure_body, failure_headers
from nanobot_api.adapters.http.ids import new_id
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.domain.errors import AuthenticationFailed, MethodNotAllowed, NanobotError, NotFound
from nanobot_api.domain.sessions import CHAT_ID_HEADERS, SESSION_HEADER

REQUEST_ID: Final = "X-Request-ID"
TASK_HEADER: Final = "X-OpenWebUI-Task"
PREFLIGHT_HEADERS: Final = {
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": ", ".join(
        ["Authorization", "Content-Type", SESSION_HEADER, REQUEST_ID, *CHAT_ID_HEADERS, TASK_HEADER]
    ),
    "Access-Control-Max-Age": "600",
}
_REQUEST_ID_MAX = 200


def install_request_hooks(app: Quart, settings: HttpSettings) -> None:
    """Request ids on every response, the API key check, and CORS for allowed origins."""

    @app.before_request
    async def _identify_and_authenticate() -> Response | None:
        g.request_id = request_id(request.headers.get(REQUEST_ID))
        origin = allowed_origin(request.headers.get("Origin"), settings)
        if request.method == "OPTIONS" and origin is not None:
            # A browser's preflight carries no credentials; it only asks what is allowed.
            return Response(status=204, headers=PREFLIGHT_HEADERS)
        public = request.path in ("/health", "/health/live", "/health/ready")
        if settings.api_key and not public and not is_page_path(request.path):
            check_bearer(request.headers.get("Authorization", ""), settings.api_key)
        return None

    @app.after_request
    async def _tag(response: Response) -> Response:
        response.headers[REQUEST_ID] = g.get("request_id") or new_id("req_")
        origin = allowed_origin(request.headers.get("Origin"), settings)
        if origin is not None:
            response.headers.update(cors_headers(origin))
        return response


def request_id(given: str | None) -> str:
    """The client's X-Request-ID if it is a sensible one, else a new id."""
    if given and len(given) <= _REQUEST_ID_MAX and given.isprintable():
        return given
    return new_id("req_")


def cors_headers(origin: str) -> dict[str, str]:
    """What a response to an allowed cross-origin request adds."""
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": f"{SESSION_HEADER}, {REQUEST_ID}",
        "Vary": "Origin",
    }


def install_error_handlers(app: Quart) -> None:
    """Every error answers OpenAI error JSON; faults are logged, never shown.

    Quart now serves only GET routes (the chat endpoint answers its POSTs), so its own
    refusals are routing ones: 404 and 405 become the domain's errors, one table away
    from their status.
    """

    @app.errorhandler(NanobotError)
    async def _domain_error(error: NanobotError) -> Response:
        return error_response(error)

    @app.errorhandler(HTTPException)
    async def _http_error(error: HTTPException) -> Response:
        if isinstance(error, werkzeug.exceptions.MethodNotAllowed):
            response = error_response(MethodNotAllowed("Method not allowed"))
            response.headers["Allow"] = ", ".join(error.valid_methods or ())
            return response
        if isinstance(error, werkzeug.exceptions.NotFound):
            return error_response(NotFound("Not found"))
        status = error.code or 500
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return json_response(
            error_json(error.description or "HTTP error", kind, None, status), status
        )

    @app.errorhandler(Exception)
    async def _fault(error: Exception) -> Response:
        return error_response(error)  # logged there


def error_response(error: BaseException) -> Response:
    status, body = failure_body(error)
    response = json_response(body, status)
    response.headers.update(failure_headers(error))
    return response


def json_response(payload: object, status: int = 200) -> Response:
    return Response(json_bytes(payload), status, content_type="application/json")


def check_bearer(header: str, api_key: str) -> None:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        token.strip().encode(), api_key.encode()
    ):
        raise AuthenticationFailed("Invalid API key")


def allowed_origin(origin: str | None, settings: HttpSettings) -> str | None:
    """The request's Origin if CORS allows it, else None."""
    return origin if origin is not None and origin in settings.cors_origins else None
