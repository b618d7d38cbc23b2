"""The ``nanobot`` command line, parsed into plain values.

    nanobot --version
    nanobot serve [-H HOST] [-p PORT] [-t SECONDS] [--api-key KEY] [-c CONFIG] [-w WORKSPACE] [-v]
                  [--log-format text|json] [--workers N]
    nanobot sessions list | show KEY [--all] | clear KEY   [-c CONFIG] [-w WORKSPACE]
    nanobot outbox list [--status S] [--attempts] | show ID | retry [--force] ID | drop ID
                   [-c CONFIG] [-w WORKSPACE]
    nanobot tools list   [-c CONFIG] [-w WORKSPACE]
    nanobot storage migrate | status | import WORKSPACE   [-c CONFIG] [-w WORKSPACE]

Every command also takes ``--storage-url URL`` (the database that holds the state).

:func:`parse_args` never prints usage and exits on a mistake: it raises :class:`UsageError`
with one line, so the console entry point reports every start-up problem the same way.
Only ``--help`` prints and exits, as argparse does.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

import attrs

from nanobot_api.domain.errors import NanobotError
from nanobot_api.domain.outbox import OUTBOX_STATUSES, OutboxStatus

_T = TypeVar("_T")

SessionsAction = Literal["list", "show", "clear"]
OutboxAction = Literal["list", "show", "retry", "drop"]
StorageAction = Literal["migrate", "status", "import"]


class UsageError(NanobotError):
    """Raised when the command line is malformed; the message is a single line."""


@attrs.frozen
class ServeCommand:
    """``nanobot serve``; None leaves the config file's (or the default) value."""

    config: Path | None = None
    workspace: Path | None = None
    storage_url: str | None = None
    host: str | None = None
    port: int | None = None
    timeout: float | None = None
    workers: int | None = None
    verbose: bool = False
    api_key: str | None = None
    log_format: Literal["text", "json"] | None = None


@attrs.frozen
class SessionsCommand:
    """``nanobot sessions``; ``key`` is set for ``show`` and ``clear``; ``all`` (for
    ``show``) includes the superseded turns."""

    action: SessionsAction
    key: str | None = None
    all: bool = False
    config: Path | None = None
    workspace: Path | None = None
    storage_url: str | None = None


@attrs.frozen
class OutboxCommand:
    """``nanobot outbox``; ``status`` filters ``list`` and ``attempts`` adds each event's
    attempts to it; ``event_id`` is for ``show``, ``retry``, ``drop``."""

    action: OutboxAction
    status: OutboxStatus | None = None
    event_id: str | None = None
    config: Path | None = None
    workspace: Path | None = None
    storage_url: str | None = None
    force: bool = False
    attempts: bool = False


@attrs.frozen
class StorageCommand:
    """``nanobot storage``; ``source`` is the workspace ``import`` reads."""

    action: StorageAction
    source: Path | None = None
    config: Path | None = None
    workspace: Path | None = None
    storage_url: str | None = None


@attrs.frozen
class ToolsCommand:
    """``nanobot tools list``: each MCP server, its state and its tools."""

    action: Literal["list"] = "list"
    config: Path | None = None
    workspace: Path | None = None


Command = ServeCommand | SessionsCommand | OutboxCommand | ToolsCommand | StorageCommand


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # argparse would print usage and exit(2); the entry point owns output and exit codes.
        raise UsageError(f"{self.prog}: {' '.join(message.split())}")


def _checked(
    flag: str, convert: Callable[[str], _T], ok: Callable[[_T], bool], expected: str
) -> Callable[[str], _T]:
    def parse(text: str) -> _T:
        # UsageError rather than ValueError: argparse would reword the latter as
        # "invalid int value" and lose what was expected.
        problem = UsageError(f"{flag}: expected {expected}, got {json.dumps(text)}", param=flag)
        try:
            value = convert(text)
        except ValueError:
            raise problem from None
        if not ok(value):
            raise problem
        return value

    return parse


_port = _checked("--port", int, lambda v: 0 <= v <= 65535, "an integer 0-65535")
_timeout = _checked("--timeout", float, lambda v: 0 < v < math.inf, "a number > 0")
_workers = _checked("--workers", int, lambda v: 1 <= v <= 64, "an integer 1-64")


def _add_locations(parser: argparse.ArgumentParser) -> None:
    # SUPPRESS: given at both `nanobot sessions -c X list` and `... list -c X`, the inner
    # parser must not reset what the outer one read.
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help="config.json to read (default: $NANOBOT_CONFIG, else ~/.nanobot/config.json)",
    )
    parser.add_argument(
        "-w",
        "--workspace",
        type=Path,
        default=argparse.SUPPRESS,
        help="where state lives: sessions, uploads, outbox (default: ~/.nanobot/workspace)",
    )
    parser.add_argument(
        "--storage-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help="PostgreSQL database holding the state (default: SQLite files in the workspace)",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nanobot-api")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nanobot", description="An OpenAI-compatible API for nanobot.")
    parser.add_argument("--version", action="version", version=f"nanobot-api {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # The defaults are written out rather than given to argparse: None means "the
    # config file's value", so a flag only wins when it is actually typed.
    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("-H", "--host", help="address to bind (default: 127.0.0.1)")
    serve.add_argument(
        "-p", "--port", type=_port, help="port to bind; 0 picks a free one (default: 8900)"
    )
    serve.add_argument(
        "-t", "--timeout", type=_timeout, help="turn time budget in seconds (default: 120)"
    )
    serve.add_argument(
        "--api-key",
        metavar="KEY",
        help="the key clients must send; needed to bind a non-loopback address "
        "(default: $NANOBOT_API_KEY, else api.apiKey, else none). "
        "The variable keeps the key out of the process list",
    )
    serve.add_argument("--workers", type=_workers, help="processes serving the port (default: 1)")
    serve.add_argument(
        "-v", "--verbose", action="store_true", help="log model calls and tool steps too"
    )
    serve.add_argument(
        "--log-format", choices=("text", "json"), help="log lines as text (default) or JSON"
    )
    _add_locations(serve)

    sessions = commands.add_parser("sessions", help="inspect or clear conversations")
    _add_locations(sessions)
    session_actions = sessions.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_locations(session_actions.add_parser("list", help="list session keys"))
    for action, text in (("show", "print a session's history"), ("clear", "forget a session")):
        sub = session_actions.add_parser(action, help=text)
        sub.add_argument("key", metavar="KEY")
        if action == "show":
            sub.add_argument(
                "--all",
                action="store_true",
                help="also print turns a regenerate, an edit or a branch switch superseded",
            )
        _add_locations(sub)

    outbox = commands.add_parser("outbox", help="inspect the outbox of undelivered messages")
    _add_locations(outbox)
    outbox_actions = outbox.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = outbox_actions.add_parser("list", help="list queued events")
    listing.add_argument("--status", choices=OUTBOX_STATUSES)
    listing.add_argument(
        "--attempts", action="store_true", help="also print each event's recorded attempts"
    )
    _add_locations(listing)
    for action, text in (
        ("show", "print an event and its recorded attempts"),
        ("retry", "queue an event again"),
        ("drop", "delete an event"),
    ):
        sub = outbox_actions.add_parser(action, help=text)
        sub.add_argument("event_id", metavar="ID")
        if action == "retry":
            sub.add_argument(
                "--force", action="store_true", help="send it again even if it was delivered"
            )
        _add_locations(sub)

    storage = commands.add_parser("storage", help="set up or fill the storage")
    _add_locations(storage)
    storage_actions = storage.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_locations(storage_actions.add_parser("migrate", help="create or update the schema"))
    _add_locations(storage_actions.add_parser("status", help="show the schema's migrations"))
    importing = storage_actions.add_parser(
        "import", help="copy a SQLite workspace's state into the database"
    )
    importing.add_argument("source", metavar="WORKSPACE", type=Path)
    _add_locations(importing)

    tools = commands.add_parser("tools", help="list the tools the agent offers")
    _add_locations(tools)
    tool_actions = tools.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_locations(tool_actions.add_parser("list", help="start each MCP server and list its tools"))
    return parser


def parse_args(argv: Sequence[str]) -> Command:
    """The command ``argv`` (without the program name) asks for.

    Raises UsageError (one line) on any mistake; ``--help`` prints and raises SystemExit(0).
    """
    ns = _build_parser().parse_args(list(argv))
    config: Path | None = getattr(ns, "config", None)
    workspace: Path | None = getattr(ns, "workspace", None)
    storage_url: str | None = getattr(ns, "storage_url", None)
    if ns.command == "serve":
        return ServeCommand(
            config=config,
            workspace=workspace,
            host=ns.host,
            port=ns.port,
            timeout=ns.timeout,
            verbose=ns.verbose,
            storage_url=storage_url,
            workers=ns.workers,
            api_key=ns.api_key,
            log_format=ns.log_format,
        )
    if ns.command == "sessions":
        return SessionsCommand(
            action=ns.action,
            key=getattr(ns, "key", None),
            all=getattr(ns, "all", False),
            config=config,
            workspace=workspace,
            storage_url=storage_url,
        )
    if ns.command == "storage":
        return StorageCommand(
            action=ns.action,
            source=getattr(ns, "source", None),
            config=config,
            workspace=workspace,
            storage_url=storage_url,
        )
    if ns.command == "tools":
        return ToolsCommand(config=config, workspace=workspace)
    return OutboxCommand(
        action=ns.action,
        status=getattr(ns, "status", None),
        event_id=getattr(ns, "event_id", None),
        config=config,
        workspace=workspace,
        storage_url=storage_url,
        force=getattr(ns, "force", False),
        attempts=getattr(ns, "attempts", False),
    )
