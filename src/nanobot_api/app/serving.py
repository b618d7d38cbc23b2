"""`nanobot serve`: build the server from configuration and run it until stopped."""

from __future__ import annotations

import gc
import logging
import sys
from functools import partial
from typing import TextIO

import anyio
from quart import Quart

from nanobot_api.adapters.http.serve import serve_app
from nanobot_api.app.bootstrap import build
from nanobot_api.app.config import Config
from nanobot_api.app.echo import ECHO_MODEL


def announce(config: Config, out: TextIO) -> None:
    """Says what is served where; the offline echo agent is announced loudly."""
    api = config.api
    if config.provider is None:
        print(
            f"nanobot: NO MODEL PROVIDER CONFIGURED - serving the offline echo agent "
            f"(model {ECHO_MODEL}). Add providers.<name> to the config to use a model.",
            file=out,
        )
    host = f"[{api.host}]" if ":" in api.host else api.host
    print(
        f"nanobot: listening on http://{host}:{api.port}/v1 (workspace {config.workspace})",
        file=out,
    )
    out.flush()


def run_server(config: Config, *, verbose: bool = False) -> int:
    """Serves until SIGINT or SIGTERM; returns the exit code."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    app = build(config)
    announce(config, sys.stderr)
    serve_in_this_process(app, config.api.host, config.api.port)
    return 0


def serve_in_this_process(app: Quart, host: str, port: int) -> None:
    """Serves ``app`` until SIGINT or SIGTERM, in a process that exists to serve it."""
    _collect_less_often()
    anyio.run(partial(serve_app, app, host=host, port=port), backend="asyncio")


def _collect_less_often() -> None:
    """Tunes Python's cycle collector for a long-running server.

    A turn allocates thousands of short-lived objects, so at the default threshold (a
    young-generation pass every 700 allocations) the collector ran several times per
    turn, and its full passes walked every history message held in memory: about a
    twentieth of a busy server's time, with pauses of tens of milliseconds. Objects
    built at start-up (modules, classes, the app) are frozen out of the passes, and a
    young pass runs every 20,000 allocations; cyclic garbage is still collected. (No
    full collection before the freeze: it cost 40 ms of start-up to free a few KB.)
    """
    gc.freeze()
    gc.set_threshold(20_000)
