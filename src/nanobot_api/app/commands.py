"""What each `nanobot` command does, once its arguments are parsed."""

from __future__ import annotations

from collections.abc import Mapping

from nanobot_api.adapters.cli.args import Command, OutboxCommand, ServeCommand, SessionsCommand
from nanobot_api.app.config import ConfigOverrides, load_config
from nanobot_api.app.serving import run_server
from nanobot_api.domain.errors import InvalidRequest


def run(command: Command, environ: Mapping[str, str]) -> int:
    """Runs ``command``; returns its exit code. Raises NanobotError on bad input."""
    match command:
        case ServeCommand():
            flags = ConfigOverrides(command.host, command.port, command.timeout, command.workspace)
            config = load_config(command.config, environ, flags)
            return run_server(config, verbose=command.verbose)
        case SessionsCommand() | OutboxCommand():
            raise InvalidRequest(f"'{type(command).__name__}' is not available yet")
