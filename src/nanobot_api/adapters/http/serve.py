"""Serving the Quart app with Hypercorn."""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart


def _not_running_on(record: logging.LogRecord) -> bool:
    # Hypercorn's "Running on ..." repeats our "listening on" line, once per worker, and
    # under --workers before it (operations.md: "listening" once the socket is bound).
    return not (record.levelno == logging.INFO and str(record.msg).startswith("Running on"))


def hypercorn_config(binds: list[str], *, graceful_timeout_s: float = 5.0) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = binds
    # Per-request access logs cost more than the echo turn itself; errors are still logged.
    config.accesslog = None
    # Hypercorn's own messages go through logging like ours, printed once.
    errors = logging.getLogger("hypercorn.error")
    if _not_running_on not in errors.filters:
        errors.addFilter(_not_running_on)
    config.errorlog = errors
    config.graceful_timeout = graceful_timeout_s
    config.keep_alive_timeout = 75
    # Hypercorn's default of 100 pending connections overflowed when a thousand clients
    # connected at once, and the kernel's SYN retries added seconds to their turns
    # (bench/inflight.py); the kernel caps it at net.core.somaxconn.
    config.backlog = 4096
    # No "server: hypercorn-h11" on every response: it tells clients nothing they need.
    config.include_server_header = False
    return config


async def serve_app(
    app: Quart,
    *,
    host: str | None = None,
    port: int | None = None,
    sock: socket.socket | None = None,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
) -> None:
    """Serves ``app`` on ``host:port``, or on an already bound socket, until the trigger fires.

    Without a trigger, SIGINT and SIGTERM stop the server gracefully.
    """
    if sock is not None:
        # Hypercorn adopts the descriptor and closes it on shutdown.
        binds = [f"fd://{sock.detach()}"]
    else:
        bracketed = f"[{host}]" if host and ":" in host else host
        binds = [f"{bracketed}:{port}"]
    await serve(app, hypercorn_config(binds), shutdown_trigger=shutdown_trigger)
