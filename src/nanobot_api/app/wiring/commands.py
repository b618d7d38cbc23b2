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
    StorageCommand,
    ToolsCommand,
)
from nanobot_api.app.config import Config, ConfigOverrides, load_config
from nanobot_api.app.sessions_admin import (
    clear_session,
    list_sessions,
    show_session,
    without_sessions,
)
from nanobot_api.app.wiring.bootstrap import session_store_path
from nanobot_api.app.wiring.channels import outbox_path
from nanobot_api.app.wiring.outbox_admin import run_outbox_command, without_outbox
from nanobot_api.app.wiring.serving import run_server
from nanobot_api.app.wiring.storage import Storage, storage_for
from nanobot_api.app.wiring.storage_admin import run_storage_command
from nanobot_api.app.wiring.tools_admin import list_tools
from nanobot_api.domain.errors import ConfigError
from nanobot_api.domain.sessions import API_CHANNEL, SessionKey

API_KEY_VARIABLE = "NANOBOT_API_KEY"


def run(command: Command, environ: Mapping[str, str]) -> int:
    """Runs ``command``; returns its exit code. Raises NanobotError on bad input."""
    match command:
        case ServeCommand():
            # The flag wins over the variable, which wins over the file.
            api_key = command.api_key or environ.get(API_KEY_VARIABLE) or None
            flags = ConfigOverrides(
                command.host,
                command.port,
                command.timeout,
                command.workspace,
                storage_url=command.storage_url,
                workers=command.workers,
                api_key=api_key,
            )
            config = load_config(command.config, environ, flags)
            if command.log_format is not None:
                config = attrs.evolve(
                    config, api=attrs.evolve(config.api, log_format=command.log_format)
                )
            return run_server(config, verbose=command.verbose)
        case SessionsCommand():
            flags = ConfigOverrides(workspace=command.workspace, storage_url=command.storage_url)
            config = load_config(command.config, environ, flags)
            return _sessions_command(command, config)
        case StorageCommand():
            flags = ConfigOverrides(workspace=command.workspace, storage_url=command.storage_url)
            config = load_config(command.config, environ, flags)
            return anyio.run(run_storage_command, command, config, sys.stdout)
        case OutboxCommand():
            flags = ConfigOverrides(workspace=command.workspace, storage_url=command.storage_url)
            config = load_config(command.config, environ, flags)
            if not config.storage.url and not outbox_path(config.workspace).exists():
                # Reading must not leave an empty outbox (or a folder) behind.
                _require_workspace(config.workspace)
                return without_outbox(command, sys.stdout)
            return run_outbox_command(command, storage_for(config))
        case ToolsCommand():
            flags = ConfigOverrides(workspace=command.workspace)
            config = load_config(command.config, environ, flags)
            return anyio.run(list_tools, config, sys.stdout, backend="asyncio")


def session_key(text: str) -> SessionKey:
    """``KEY`` as typed: ``api:<id>``, any ``<channel>:<id>``, or a bare API session id."""
    return SessionKey.parse(text if ":" in text else f"{API_CHANNEL}:{text}")


def _sessions_command(command: SessionsCommand, config: Config) -> int:
    # A bad key is a usage error (stderr, exit 2), refused before the file is looked at.
    key = None if command.action == "list" else session_key(command.key or "")
    if not config.storage.url and not session_store_path(config).exists():
        # Nothing was ever kept here: say so, and create nothing (a mistyped -w stays a typo).
        _require_workspace(config.workspace)
        return without_sessions(command.action, key, sys.stdout)
    return anyio.run(_sessions, command, key, storage_for(config))


def _require_workspace(workspace: Path) -> None:
    if not workspace.is_dir():
        raise ConfigError(
            f"{workspace}: no such workspace (the folder `nanobot serve -w` keeps its state in)",
            param="--workspace",
        )


async def _sessions(command: SessionsCommand, key: SessionKey | None, storage: Storage) -> int:
    async with storage.opened():
        store = storage.sessions
        if key is None:
            return await list_sessions(store, sys.stdout)
        if command.action == "show":
            return await show_session(store, key, sys.stdout, every=command.all)
        return await clear_session(store, key, sys.stdout)
