"""Stage 2: every failure of a request becomes OpenAI error JSON, in one place.

The stage catches what any later stage or route raises; Quart's own refusals (404,
405, an error raised in a Quart route) come here through the handlers installed by
:func:`install_quart_error_rendering`. A fault (anything but a NanobotError) is
logged with its traceback by ``errors.failure_body`` and answered 500 without detail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import werkzeug.exceptions
from quart import Quart, Response, request

from nanobot_api.adapters.http.answers import error_json, json_bytes
from nanobot_api.adapters.http.errors import failure_body, failure_headers
from nanobot_api.adapters.http.pipeline.exchange import ClientGone, Exchange
from nanobot_api.domain.errors import MethodNotAllowed, NanobotError, NotFound, RequestTimedOut

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next


class ErrorRenderingStage:
    """Answers a failure of the rest of the pipeline with its status and error body."""

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        try:
            await call_next(exchange)
        except ClientGone:
            return
        except Exception as error:
            if exchange.started:
                raise  # nothing more can be said on this response
            status, body = failure_body(error)
            # Refused halfway through its body (too large, malformed, a file refused),
            # the client may still be sending: read on a little so it sees the answer.
            # Not a body out of time: its sender has had all the time it gets.
            if not isinstance(error, RequestTimedOut):
                await exchange.discard_some()
            exchange.response_headers += [
                (name.lower().encode(), value.encode())
                for name, value in failure_headers(error).items()
            ]
            await exchange.respond_json(status, body)


def install_quart_error_rendering(app: Quart) -> None:
    """Quart's refusals and its routes' errors answered with the same bodies."""

    @app.errorhandler(NanobotError)
    async def _domain_error(error: NanobotError) -> Response:
        return error_response(error)

    @app.errorhandler(werkzeug.exceptions.HTTPException)
    async def _http_error(error: werkzeug.exceptions.HTTPException) -> Response:
        if isinstance(error, werkzeug.exceptions.MethodNotAllowed):
            response = error_response(MethodNotAllowed("Method not allowed"))
            response.headers["Allow"] = ", ".join(error.valid_methods or ())
            return response
        if isinstance(error, werkzeug.exceptions.NotFound):
            return error_response(NotFound(not_found_message(request.path, app)))
        status = error.code or 500
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return json_response(
            error_json(error.description or "HTTP error", kind, None, status), status
        )

    @app.errorhandler(Exception)
    async def _fault(error: Exception) -> Response:
        return error_response(error)  # logged there


# OpenAI's endpoints as paths under /v1: a request for one of them without the
# /v1 prefix comes from a client whose base URL lacks it (a common slip).
_OPENAI_PATHS = (
    "assistants",
    "audio",
    "batches",
    "chat/completions",
    "completions",
    "conversations",
    "embeddings",
    "files",
    "fine_tuning",
    "images",
    "models",
    "moderations",
    "responses",
    "threads",
    "uploads",
    "vector_stores",
)


def not_found_message(path: str, app: Quart) -> str:
    """What a client is told for a path nothing answers: for an OpenAI path (under
    ``/v1/``: ``/v1/completions``, ``/v1/embeddings``...), which ones this server
    serves, so a client configured for another endpoint learns what to use instead;
    for an OpenAI path without its ``/v1`` prefix, that the base URL needs it."""
    if not path.startswith("/v1/"):
        if not any(path in (f"/{p}", f"/{p}/") or path.startswith(f"/{p}/") for p in _OPENAI_PATHS):
            return "Not found"
        return (
            f"{path} is not served by this server: the OpenAI API is under /v1 "
            f"(set the client's base URL to end in /v1, here {'/v1' + path})"
        )
    served = sorted(
        {
            (rule.rule, method)
            for rule in app.url_map.iter_rules()
            if rule.rule.startswith("/v1/")
            for method in rule.methods or ()
            if method not in ("HEAD", "OPTIONS")
        }
    )
    routes = ", ".join(f"{method} {rule}" for rule, method in served)
    return f"{path} is not served by this server; it serves: {routes}"


def error_response(error: BaseException) -> Response:
    status, body = failure_body(error)
    response = json_response(body, status)
    response.headers.update(failure_headers(error))
    return response


def json_response(payload: object, status: int = 200) -> Response:
    return Response(json_bytes(payload), status, content_type="application/json")
