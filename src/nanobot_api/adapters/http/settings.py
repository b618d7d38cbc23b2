"""What the HTTP layer is told by the composition root."""

from __future__ import annotations

import attrs

from nanobot_api.domain.attachments import UploadLimits
from nanobot_api.domain.requests import HistoryMode


@attrs.frozen
class HttpSettings:
    """What the HTTP layer needs to know; the composition root fills it from config."""

    api_key: str = ""
    limits: UploadLimits = attrs.field(factory=UploadLimits)
    sse_keepalive_s: float = 15.0
    # The whole body must have arrived this long after it is first read, or 408.
    body_timeout_s: float = 60.0
    history: HistoryMode = "reject"
    cors_origins: frozenset[str] = frozenset()
    # The chat page at ``/`` (api.chatPage); off, ``/`` is a 404 like any unserved path.
    chat_page: bool = True
    # Host names a server without a key answers to, beside localhost and the loopback
    # addresses (the bound host and api.allowedHosts); with or without a port.
    allowed_hosts: frozenset[str] = frozenset()
