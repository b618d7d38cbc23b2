"""Stage 6: which handler answers. The chat POST is answered by ``ChatEndpoint``
straight on ASGI (see docs/discussion/chat-endpoint.md for why); every other request
goes to Quart's routes, its body already read under the body stage's rules."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlsplit

from hypercorn.typing import ASGIFramework

from nanobot_api.adapters.http.pipeline.exchange import Exchange, Message, Receive

CHAT_PATH: Final = "/v1/chat/completions"
PUBLIC_PATHS: Final = frozenset({"/health", "/health/live", "/health/ready", "/"})
PUBLIC_PREFIXES: Final = ("/static/",)


def is_public(path: str) -> bool:
    """Whether a route never needs a key (health checks, the chat page and its files)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def route_path(path: str, root_path: str = "") -> str:
    """The path a request is routed by, exactly as Quart routes it: a request sent to
    an absolute URL (``POST http://host/v1/...``, as some proxies send) keeps only its
    path, leading slashes count as one (werkzeug's rule: ``//v1/...`` is ``/v1/...``),
    and the root path is taken off. (Disagreeing with Quart once made a chat POST to
    ``//v1/chat/completions`` reach Quart's placeholder: a 500.)"""
    if not path.startswith("/"):
        path = urlsplit(path).path
    path = "/" + path.lstrip("/")
    return path.removeprefix(root_path) if root_path else path


class Router:
    """The last stage: the chat POST to ``chat``, anything else to ``app`` (Quart)."""

    def __init__(self, chat: Callable[[Exchange], Awaitable[None]], app: ASGIFramework) -> None:
        self._chat = chat
        self._app = app

    async def __call__(self, exchange: Exchange) -> None:
        if exchange.method == "POST" and exchange.path == CHAT_PATH:
            await self._chat(exchange)
            return
        receive: Receive = exchange.receive
        if exchange.has_body:
            receive = _replay(await exchange.read_body(), receive)
        await self._app(exchange.scope, receive, exchange.send)  # type: ignore[arg-type]


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands over the body already read, then the connection's events."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
