"""`nanobot serve`: build the server from configuration and run it until stopped."""

from __future__ import annotations

import gc
import logging
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TextIO

import anyio
import attrs
from quart import Quart

from nanobot_api.adapters.http.serve import serve_app
from nanobot_api.app.bootstrap import build
from nanobot_api.app.config import ApiConfig, Config
from nanobot_api.app.echo import ECHO_MODEL


def announce(config: Config, out: TextIO) -> None:
    """Says what is served where (the bound port, also when 0 was asked for); the offline
    echo agent is announced loudly."""
    api = config.api
    if config.provider is None:
        print(
            f"nanobot: NO MODEL PROVIDER CONFIGURED - serving the offline echo agent "
            f"(model {ECHO_MODEL}). Add providers.<name> to the config to use a model.",
            file=out,
        )
    print(f"nanobot: listening on {api_url(api)} (workspace {config.workspace})", file=out)
    print(f"nanobot: chat in the browser at {page_url(api)}", file=out)
    out.flush()


def api_url(api: ApiConfig) -> str:
    return f"{page_url(api)}v1"


def page_url(api: ApiConfig) -> str:
    host = f"[{api.host}]" if ":" in api.host else api.host
    return f"http://{host}:{api.port}/"


def bind(api: ApiConfig) -> tuple[ApiConfig, socket.socket | None]:
    """For port 0, a socket bound to a free port and ``api`` with that port; else no socket
    (Hypercorn binds the configured port itself)."""
    if api.port != 0:
        return api, None
    family = socket.AF_INET6 if ":" in api.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((api.host.strip("[]"), 0))
        # Listening now, so a client told the port is queued rather than refused
        # while the server is still starting.
        sock.listen(socket.SOMAXCONN)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return attrs.evolve(api, port=sock.getsockname()[1]), sock


def log_to_stderr(*, verbose: bool = False) -> None:
    """Timestamped log lines, unless the program has set up logging already (then
    basicConfig does nothing)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def run_server(config: Config, *, verbose: bool = False) -> int:
    """Serves until SIGINT or SIGTERM; returns the exit code."""
    log_to_stderr(verbose=verbose)
    app = build(config)
    api, sock = bind(config.api)
    announce(attrs.evolve(config, api=api), sys.stderr)
    serve_until_stopped(app, api, sock)
    return 0


def serve_until_stopped(app: Quart, api: ApiConfig, sock: socket.socket | None = None) -> None:
    """Serves ``app`` on ``sock`` if given, else on ``api.host:api.port``, until SIGINT or
    SIGTERM."""
    serving = (
        partial(serve_app, app, sock=sock)
        if sock is not None
        else partial(serve_app, app, host=api.host, port=api.port)
    )
    with _collecting_less_often():
        anyio.run(serving, backend="asyncio")


@contextmanager
def _collecting_less_often() -> Iterator[None]:
    """Tunes Python's cycle collector while the server runs, and restores it after.

    A turn allocates thousands of short-lived objects, so at the default threshold (a
    young-generation pass every 700 allocations) the collector ran several times per
    turn, and its full passes walked every history message held in memory: about a
    twentieth of a busy server's time, with pauses of tens of milliseconds. Objects
    built at start-up (modules, classes, the app) are frozen out of the passes, and a
    young pass runs every 20,000 allocations; cyclic garbage is still collected. (No
    full collection before the freeze: it cost 40 ms of start-up to free a few KB.) A
    program that embeds the server gets its own settings back when it stops.
    """
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000)
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
