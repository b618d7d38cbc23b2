"""What the HTTP layer is told by the composition root."""

from __future__ import annotations

import attrs

from nanobot_api.adapters.http.wire import HistoryMode
from nanobot_api.domain.attachments import UploadLimits


@attrs.frozen
class HttpSettings:
    """What the HTTP layer needs to know; the composition root fills it from config."""

    api_key: str = ""
    limits: UploadLimits = attrs.field(factory=UploadLimits)
    sse_keepalive_s: float = 15.0
    # Reading a large upload over a slow link may take a while; this bounds a stalled one.
    body_timeout_s: float = 120.0
    history: HistoryMode = "reject"
    cors_origins: frozenset[str] = frozenset()
    # The chat page at ``/`` (api.chatPage); off, ``/`` is a 404 like any unserved path.
    chat_page: bool = True
