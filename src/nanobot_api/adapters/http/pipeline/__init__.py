"""The request pipeline: every HTTP request passes the same ordered stages once.

    request_id       X-Request-ID in, and on every answer          request_id.py
    error_rendering  any failure below becomes OpenAI error JSON   error_rendering.py
    origin           CORS, preflight, forbidden_origin/_host       origin.py
    authentication   the API key                                   authentication.py
    body             size limit, Content-Type, deadline (408)      body.py
    routing          the chat POST, else Quart's routes            routing.py

A stage is ``async def stage(exchange, call_next)``: it may look at the request,
add response headers, answer (and not call on), raise a domain error (rendered by
``error_rendering``), or call ``call_next(exchange)``. To add one, write a module
here with a class of that shape and put it in ``standard_stages`` where it belongs
(see ``app.py``); a route is a Quart route in ``app.py`` (its rules come from here).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, cast

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from nanobot_api.adapters.http.pipeline.exchange import Exchange, Receive, Send
from nanobot_api.adapters.http.pipeline.routing import is_public, route_path

Next = Callable[[Exchange], Awaitable[None]]


class Stage(Protocol):
    """One rule every request passes."""

    async def __call__(self, exchange: Exchange, call_next: Next) -> None: ...


class Pipeline:
    """An ASGI app: HTTP requests pass ``stages`` in order, then ``endpoint``;
    anything else (lifespan) goes straight to ``app``."""

    def __init__(self, app: ASGIFramework, stages: Sequence[Stage], endpoint: Next) -> None:
        self._app = app
        self.stages = tuple(stages)
        handler = endpoint
        for stage in reversed(self.stages):
            handler = _link(stage, handler)
        self._first = handler

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        path = route_path(scope["path"], scope.get("root_path", ""))
        exchange = Exchange(scope, cast(Receive, receive), cast(Send, send), path)
        exchange.public = is_public(path)
        await self._first(exchange)


def _link(stage: Stage, call_next: Next) -> Next:
    # A plain function handing back the stage's own coroutine, not a coroutine awaiting
    # it: one frame less per stage on every request, and on every wake-up of a streamed
    # answer (each resumes through the whole chain of awaits).
    def run(exchange: Exchange) -> Awaitable[None]:
        return stage(exchange, call_next)

    return run


__all__ = ["Exchange", "Next", "Pipeline", "Stage"]
