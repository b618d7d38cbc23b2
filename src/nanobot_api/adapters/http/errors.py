"""The one place where domain errors become HTTP statuses and OpenAI error bodies."""

from __future__ import annotations

import logging
import math
from typing import Final

from nanobot_api.adapters.http.answers import error_json
from nanobot_api.domain.errors import (
    AuthenticationFailed,
    ConversationConflict,
    ForbiddenHost,
    ForbiddenOrigin,
    IdempotencyKeyReused,
    InvalidRequest,
    MethodNotAllowed,
    NanobotError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RequestTimedOut,
    RetryLater,
    ServerShuttingDown,
    SessionBusy,
    StorageUnavailable,
    TurnTimedOut,
    UnsupportedMediaType,
    UpstreamFailed,
)

log = logging.getLogger(__name__)

_HTTP: Final[dict[type[NanobotError], tuple[int, str]]] = {
    InvalidRequest: (400, "invalid_request_error"),
    IdempotencyKeyReused: (422, "idempotency_key_reused"),
    RateLimited: (429, "rate_limit_exceeded"),
    ServerShuttingDown: (503, "server_shutdown"),
    NotFound: (404, "invalid_request_error"),
    MethodNotAllowed: (405, "invalid_request_error"),
    ConversationConflict: (409, "conversation_conflict"),
    AuthenticationFailed: (401, "authentication_error"),
    ForbiddenOrigin: (403, "forbidden_origin"),
    ForbiddenHost: (403, "forbidden_host"),
    RequestTimedOut: (408, "invalid_request_error"),
    PayloadTooLarge: (413, "invalid_request_error"),
    UnsupportedMediaType: (415, "invalid_request_error"),
    TurnTimedOut: (504, "server_error"),
    UpstreamFailed: (502, "server_error"),
    SessionBusy: (409, "session_busy"),
    StorageUnavailable: (503, "storage_unavailable"),
}
_FALLBACK: Final = (500, "server_error")
INTERNAL_ERROR: Final = "Internal server error"


def status_of(error: NanobotError) -> tuple[int, str]:
    """The status and OpenAI error type of a domain error; the most specific class wins."""
    for cls in type(error).__mro__:
        if cls in _HTTP:
            return _HTTP[cls]
    return _FALLBACK


def failure_body(error: BaseException) -> tuple[int, dict[str, object]]:
    """The status and error body for any failure of a request.

    A fault (anything but a NanobotError) is logged here, with its traceback, and the
    client reads only "Internal server error": its details stay in the log.
    """
    if isinstance(error, NanobotError):
        status, kind = status_of(error)
        return status, error_json(error.message, kind, error.param, status)
    log.error("unhandled error", exc_info=error)
    return 500, error_json(INTERNAL_ERROR, "server_error", None, 500)


def failure_headers(error: BaseException) -> dict[str, str]:
    """Headers an error answer carries besides its body: ``Retry-After`` (whole seconds,
    at least 1) for a refusal that says when to come back (a 429, a 503)."""
    if isinstance(error, RetryLater):
        return {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    return {}
