"""The HTTP header names nanobot-api reads and writes, and the session ids they carry."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final, Protocol
from urllib.parse import quote

from nanobot_api.domain.attachments import Document
from nanobot_api.domain.sessions import SessionHeaders

REQUEST_ID: Final = "X-Request-ID"
SESSION_HEADER: Final = "X-Session-Id"
CHAT_ID_HEADERS: Final = ("X-OpenWebUI-Chat-Id", "X-Chat-Id")
TASK_HEADER: Final = "X-OpenWebUI-Task"
TRUNCATED_HEADER: Final = "X-Attachments-Truncated"
# The recipe's message-id headers (docs/how-to/front-ends.md), in the order
# MessageIds.from_headers takes them: user message, answer, the answer before.
MESSAGE_ID_HEADERS: Final = (
    "X-OpenWebUI-User-Message-Id",
    "X-OpenWebUI-Message-Id",
    "X-OpenWebUI-User-Message-Parent-Id",
)
# Headers Open WebUI sends with ENABLE_FORWARD_USER_INFO_HEADERS=true (and only it).
OPEN_WEBUI_HEADERS: Final = ("X-OpenWebUI-Chat-Id", "X-OpenWebUI-User-Id")


def session_headers(headers: Mapping[str, str]) -> SessionHeaders:
    """The session ids among ``headers`` (keyed by lower-case name)."""
    session = headers.get("x-session-id")
    chat_ids = tuple(
        (name, value)
        for name in CHAT_ID_HEADERS
        if (value := headers.get(name.lower())) is not None
    )
    return SessionHeaders(None if session is None else (SESSION_HEADER, session), chat_ids)


def truncated_files(documents: Iterable[Document]) -> str | None:
    """The ``X-Attachments-Truncated`` value, or None when no document was cut: the
    names of the documents cut to their bound, comma-separated, each percent-encoded
    as UTF-8 where it is not plain (a header carries Latin-1 only, and a comma or
    control character in a name must not split or break it). Every route answering a
    turn sets it from here."""
    cut = [quote(doc.name, safe=" ._-()[]+@") for doc in documents if doc.truncated]
    return ", ".join(cut) if cut else None


def as_utf8(value: str) -> str:
    """A header value werkzeug decoded as Latin-1, read as UTF-8 the way the pipeline
    reads every header (so a Quart route and the chat route see the same session)."""
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value


class _Headers(Protocol):
    def get(self, key: str) -> str | None: ...


def quart_session_headers(headers: _Headers) -> SessionHeaders:
    """The session ids among a Quart request's headers (case-insensitive, Latin-1)."""
    names = (SESSION_HEADER, *CHAT_ID_HEADERS)
    return session_headers(
        {name.lower(): as_utf8(value) for name in names if (value := headers.get(name)) is not None}
    )
