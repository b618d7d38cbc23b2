"""Stage 3: who may send requests from a browser, and under which host name.

- An ``Origin`` in ``api.corsOrigins`` gets CORS headers, and its preflight
  (``OPTIONS``) is answered here, before any key is asked for.
- Any other ``Origin`` that is not the server's own -> 403 ``forbidden_origin``,
  before a byte of the body is read: a page can send a multipart or text/plain POST
  cross-site without a preflight, and must not be able to run turns.
- Without an API key, a ``Host`` outside ``api.allowedHosts`` (default: localhost,
  the loopback addresses and the bound host) -> 403 ``forbidden_host``, so a page
  cannot reach the server by DNS rebinding either.

Clients that send no ``Origin`` (SDKs, curl) are unaffected; public routes (health,
the chat page) are never refused here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from nanobot_api.adapters.http.headers import (
    CHAT_ID_HEADERS,
    MESSAGE_ID_HEADERS,
    REQUEST_ID,
    SESSION_HEADER,
    TASK_HEADER,
)
from nanobot_api.adapters.http.pipeline.exchange import Exchange
from nanobot_api.domain.errors import ForbiddenHost, ForbiddenOrigin

if TYPE_CHECKING:
    from nanobot_api.adapters.http.pipeline import Next

ALLOWED_METHODS: Final = "GET, POST, DELETE, OPTIONS"
ALLOWED_HEADERS: Final = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    REQUEST_ID,
    SESSION_HEADER,
    *CHAT_ID_HEADERS,
    TASK_HEADER,
    *MESSAGE_ID_HEADERS,
)
EXPOSED_HEADERS: Final = (REQUEST_ID, SESSION_HEADER, "Retry-After", "X-Attachments-Truncated")
LOCAL_HOSTS: Final = ("localhost",)


def _encoded(pairs: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in pairs]


_PREFLIGHT: Final = _encoded(
    [
        ("Access-Control-Allow-Methods", ALLOWED_METHODS),
        # Open WebUI sends a family of X-OpenWebUI-* headers; a browser asks for each.
        ("Access-Control-Allow-Headers", ", ".join(ALLOWED_HEADERS)),
        ("Access-Control-Max-Age", "600"),
    ]
)


class OriginStage:
    """CORS for the configured origins; foreign origins and hosts refused."""

    def __init__(self, cors_origins: Iterable[str], allowed_hosts: Iterable[str] | None) -> None:
        """``allowed_hosts`` None: any Host (a server with a key needs no check)."""
        self._cors = frozenset(cors_origins)
        self._hosts = None if allowed_hosts is None else frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, exchange: Exchange, call_next: Next) -> None:
        headers = exchange.headers
        origin = headers.get("origin")
        allowed = origin is not None and origin in self._cors
        if not exchange.public:
            host = headers.get("host")
            if self._hosts is not None and host is not None and not self._host_ok(host):
                raise ForbiddenHost(
                    f"Host {host[:100]!r} is not served: add it to api.allowedHosts "
                    "(or set api.apiKey)"
                )
            if origin is not None and not allowed and not same_origin(origin, host):
                raise ForbiddenOrigin(
                    "Requests from this web page's origin are refused: add it to "
                    "api.corsOrigins to allow it"
                )
        if allowed:
            assert origin is not None
            exchange.response_headers += cors_headers(origin)
            if exchange.method == "OPTIONS":
                # A browser's preflight carries no credentials; it only asks what is allowed.
                await exchange.respond_empty(204, _preflight(headers))
                return
        await call_next(exchange)

    def _host_ok(self, host: str) -> bool:
        host = host.strip().lower()
        name = host_name(host)
        if host in self._hosts or name in self._hosts or name in LOCAL_HOSTS:  # type: ignore[operator]
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False


def _preflight(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    asked = headers.get("access-control-request-headers", "")
    extra = [h.strip() for h in asked.split(",") if h.strip().lower().startswith("x-openwebui-")]
    if not extra:
        return _PREFLIGHT
    listed = ", ".join([*ALLOWED_HEADERS, *extra])
    return [*_PREFLIGHT[:1], (b"access-control-allow-headers", listed.encode()), _PREFLIGHT[2]]


def cors_headers(origin: str) -> list[tuple[bytes, bytes]]:
    """What an answer to an allowed cross-origin request adds."""
    return _encoded(
        [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Expose-Headers", ", ".join(EXPOSED_HEADERS)),
            ("Vary", "Origin"),
        ]
    )


def host_name(host: str) -> str:
    """The name in a Host header, without its port (``[::1]:80`` -> ``::1``)."""
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


_DEFAULT_PORTS: Final = {"http": "80", "https": "443"}


def same_origin(origin: str, host: str | None) -> bool:
    """Whether ``origin`` is the server's own: a page it served (the chat page)."""
    if host is None:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    default = _DEFAULT_PORTS.get(parts.scheme)
    if default is None:
        return False
    return _without_port(parts.netloc.lower(), default) == _without_port(host.lower(), default)


def _without_port(netloc: str, default: str) -> str:
    return netloc.removesuffix(f":{default}")
