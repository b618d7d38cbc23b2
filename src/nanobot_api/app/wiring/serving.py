"""`nanobot serve`: build the server from configuration and run it until stopped."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import TextIO

import anyio
from quart import Quart

from nanobot_api.adapters.http.serve import serve_app
from nanobot_api.app.config import ApiConfig, Config
from nanobot_api.app.echo import ECHO_MODEL
from nanobot_api.app.wiring.bootstrap import build


def announce(config: Config, out: TextIO) -> None:
    """Says what is served where; the offline echo agent is announced loudly."""
    api = config.api
    if config.provider is None:
        print(
            f"nanobot: NO MODEL PROVIDER CONFIGURED - serving the offline echo agent "
            f"(model {ECHO_MODEL}). Add providers.<name> to the config to use a model.",
            file=out,
        )
    print(f"nanobot: listening on {api_url(api)} (workspace {config.workspace})", file=out)
    out.flush()


def api_url(api: ApiConfig) -> str:
    host = f"[{api.host}]" if ":" in api.host else api.host
    return f"http://{host}:{api.port}/v1"


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
    announce(config, sys.stderr)
    serve_until_stopped(app, config.api)
    return 0


def serve_until_stopped(app: Quart, api: ApiConfig) -> None:
    """Serves ``app`` on ``api.host:api.port`` until SIGINT or SIGTERM."""
    with _collecting_less_often():
        anyio.run(partial(serve_app, app, host=api.host, port=api.port), backend="asyncio")


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
