"""`nanobot serve`: build the server from configuration and run it until stopped."""

from __future__ import annotations

import logging
import sys
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
    anyio.run(_serve, app, config)
    return 0


async def _serve(app: Quart, config: Config) -> None:
    await serve_app(app, host=config.api.host, port=config.api.port)
