"""The HTTP header names nanobot-api reads and writes, and the session ids they carry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from nanobot_api.domain.sessions import SessionHeaders

REQUEST_ID: Final = "X-Request-ID"
SESSION_HEADER: Final = "X-Session-Id"
CHAT_ID_HEADERS: Final = ("X-OpenWebUI-Chat-Id", "X-Chat-Id")
TASK_HEADER: Final = "X-OpenWebUI-Task"


def session_headers(headers: Mapping[str, str]) -> SessionHeaders:
    """The session ids among ``headers`` (keyed by lower-case name)."""
    session = headers.get("x-session-id")
    chat_ids = tuple(
        (name, value)
        for name in CHAT_ID_HEADERS
        if (value := headers.get(name.lower())) is not None
    )
    return SessionHeaders(None if session is None else (SESSION_HEADER, session), chat_ids)
