"""A real server on a real socket, inside the caller's event loop: for acceptance tests."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs
from quart import Quart

from nanobot_api.adapters.http.serve import serve_app


@attrs.frozen
class RunningServer:
    """Where a server started by :func:`running_server` answers."""

    app: Quart
    host: str
    port: int
    api_key: str

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The URL to give an OpenAI client as ``base_url``."""
        return f"{self.origin}/v1"


@asynccontextmanager
async def running_server(app: Quart, *, api_key: str = "") -> AsyncIterator[RunningServer]:
    """Serves ``app`` with Hypercorn on a free 127.0.0.1 port until the block ends."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    stop = anyio.Event()
    ready = anyio.Event()

    @app.before_serving
    async def _ready() -> None:
        ready.set()

    port = sock.getsockname()[1]
    # Hypercorn takes the socket over and closes it when it stops.
    async with anyio.create_task_group() as group:
        group.start_soon(_serve, app, sock, stop)
        await ready.wait()
        try:
            yield RunningServer(app, "127.0.0.1", port, api_key)
        finally:
            stop.set()


async def _serve(app: Quart, sock: socket.socket, stop: anyio.Event) -> None:
    await serve_app(app, sock=sock, shutdown_trigger=stop.wait)
