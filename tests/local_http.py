"""An aiohttp app on 127.0.0.1, standing in for a model provider or a chat platform."""

from __future__ import annotations

from aiohttp import web


async def serve_locally(
    app: web.Application, port: int = 0, *, shutdown_timeout: float = 1.0
) -> tuple[web.AppRunner, int]:
    """Starts ``app`` on 127.0.0.1 (``port`` 0: a free one); returns its runner, whose
    ``cleanup()`` stops it, and the port it listens on."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, runner.addresses[0][1]
