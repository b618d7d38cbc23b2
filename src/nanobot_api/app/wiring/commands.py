"""What each `nanobot` command does, once its arguments are parsed."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import attrs

from nanobot_api.adapters.cli.args import (
    Command,
    OutboxCommand,
    ServeCommand,
    SessionsCommand,
    ToolsCommand,
)
from nanobot_api.adapters.storage.sqlite import SqliteSessionStore
from nanobot_api.app.config import ConfigOverrides, load_config
from nanobot_api.app.sessions_admin import clear_session, list_sessions, show_session
from nanobot_api.app.wiring.bootstrap import session_store_path
from nanobot_api.app.wiring.channels import outbox_path
from nanobot_api.app.wiring.outbox_admin import run_outbox_command
from nanobot_api.app.wiring.serving import run_server
from nanobot_api.app.wiring.tools_admin import list_tools
from nanobot_api.domain.sessions import SessionKey


def run(command: Command, environ: Mapping[str, str]) -> int:
    """Runs ``command``; returns its exit code. Raises NanobotError on bad input."""
    match command:
        case ServeCommand():
            flags = ConfigOverrides(command.host, command.port, command.timeout, command.workspace)
            config = load_config(command.config, environ, flags)
            if command.log_format is not None:
                config = attrs.evolve(
                    config, api=attrs.evolve(config.api, log_format=command.log_format)
                )
            return run_server(config, verbose=command.verbose)
        case SessionsCommand():
            flags = ConfigOverrides(workspace=command.workspace)
            config = load_config(command.config, environ, flags)
            return anyio.run(_sessions, command, session_store_path(config))
        case OutboxCommand():
            flags = ConfigOverrides(workspace=command.workspace)
            config = load_config(command.config, environ, flags)
            return run_outbox_command(command, outbox_path(config.workspace))
        case ToolsCommand():
            flags = ConfigOverrides(workspace=command.workspace)
            config = load_config(command.config, environ, flags)
            return anyio.run(list_tools, config, sys.stdout, backend="asyncio")


async def _sessions(command: SessionsCommand, path: Path) -> int:
    # A bad key is a usage error (stderr, exit 2), refused before the file is opened.
    key = None if command.action == "list" else SessionKey.parse(command.key or "")
    async with SqliteSessionStore(path) as store:
        if key is None:
            return await list_sessions(store, sys.stdout)
        if command.action == "show":
            return await show_session(store, key, sys.stdout, every=command.all)
        return await clear_session(store, key, sys.stdout)
