"""The library face: a user's agent behind the same API that ``nanobot serve`` runs.

``create_app`` and ``serve`` go through the composition root (``bootstrap.build``), so
a custom agent gets exactly the server's sessions, uploads, streaming and limits.
Quart, Hypercorn and the document readers are imported on first use, not when
``nanobot_api`` is imported.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs

from nanobot_api.app.function_agent import AgentFunction, agent
from nanobot_api.domain.ports import Agent, Attachments, SessionStore

if TYPE_CHECKING:
    from quart import Quart

    from nanobot_api.app.config import Config

AgentLike = Agent | AgentFunction

# Keywords that replace a part of the server instead of a configuration value.
_PARTS: Final = ("store", "attachments")


def as_agent(candidate: AgentLike) -> Agent:
    """An Agent as given, or a plain async function wrapped by :func:`agent`."""
    if hasattr(candidate, "respond") and hasattr(candidate, "model"):
        return candidate
    return agent(candidate)


def configure(config: Config | None = None, **overrides: Any) -> Config:
    """``config`` (default: every default) with ``api.*`` fields and ``workspace`` replaced.

    Each override is checked by the same rules as ``config.json`` (so ``port=-1`` or a
    non-loopback ``host`` without ``api_key`` is refused with the same one-line
    ConfigError), and ``${NAME}`` in a string is expanded from the environment.
    """
    from nanobot_api.app.config import ApiConfig, Config, with_api_overrides

    base = config if config is not None else Config()
    api_fields = {field.name for field in attrs.fields(ApiConfig)}
    workspace = overrides.pop("workspace", None)
    unknown = sorted(set(overrides) - api_fields)
    if unknown:
        known = ", ".join(sorted(api_fields | {"workspace", *_PARTS}))
        raise TypeError(f"unexpected keyword argument {unknown[0]!r} (known: {known})")
    # As JSON data (a tuple as a list), so the file's rules check the overrides too.
    checked = with_api_overrides(
        base, {key: _json_value(value) for key, value in overrides.items()}, os.environ
    )
    return attrs.evolve(
        checked, workspace=Path(workspace) if workspace is not None else base.workspace
    )


def _json_value(value: object) -> object:
    return list(value) if isinstance(value, tuple | list | set | frozenset) else value


def create_app(agent: AgentLike, config: Config | None = None, **overrides: Any) -> Quart:
    """The OpenAI-compatible Quart app in front of ``agent``.

    ``agent`` is an Agent, or an async function that :func:`agent` turns into one.
    ``config`` defaults to every default of ``config.json``; keyword arguments replace
    fields of ``config.api`` (``api_key=``, ``timeout=``, ``max_file_mb=``, ...) and
    ``workspace=`` (where sessions and uploads are kept). Without ``workspace=`` or a
    ``config``, the app keeps its state in a workspace of its own,
    ``~/.nanobot/apps/<model>`` (see :func:`app_workspace`), never in the one
    ``nanobot serve`` uses, so two agents never read each other's sessions.
    ``store=`` and ``attachments=`` replace those parts of the server. Raises
    ConfigError (a NanobotError) for a bad value and TypeError for an unknown keyword.

    Serve the app with an ASGI server (Hypercorn), or in tests inside
    ``async with app.test_app()``, which runs its start-up and shut-down (the session
    store, the outbox).
    """
    return build_app(as_agent(agent), config, overrides)[0]


def serve(
    agent: AgentLike,
    host: str | None = None,
    port: int | None = None,
    config: Config | None = None,
    **overrides: Any,
) -> None:
    """Serves ``agent`` under Hypercorn on ``host:port`` until SIGINT or SIGTERM.

    ``host`` and ``port`` default to the configuration's (``127.0.0.1:8900``); the rest
    is as in :func:`create_app`. ``port=0`` binds a free port, which the
    "listening on" line printed at start names. A non-loopback ``host`` needs
    ``api_key``. Blocks;
    returns once the server has shut down gracefully. A configuration or start-up
    problem (a bad value, a port in use, a workspace it cannot write, a corrupt
    sessions file) is printed as one line on stderr and raises ``SystemExit(2)``.
    """
    from nanobot_api.app.wiring.serving import log_to_stderr, serve_until_stopped, startup_lines
    from nanobot_api.domain.errors import NanobotError

    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    resolved = as_agent(agent)
    try:
        app, checked = build_app(resolved, config, overrides)
        log_to_stderr(log_format=checked.api.log_format)  # like `nanobot serve`
        lines = startup_lines(checked, resolved.model, custom_agent=True)
        serve_until_stopped(app, checked, lines)
    except NanobotError as exc:
        # As `nanobot serve` does: one line, exit status 2, no traceback.
        print(f"nanobot: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def app_workspace(model: str, home: Path | None = None) -> Path:
    """Where a library app serving ``model`` keeps its state unless told otherwise:
    ``~/.nanobot/apps/<model>``, the model id made safe as a folder name."""
    folder = re.sub(r"[^A-Za-z0-9._-]", "_", model).strip(".") or "agent"
    return (home if home is not None else Path.home()) / ".nanobot" / "apps" / folder


def build_app(
    agent: Agent, config: Config | None, overrides: dict[str, Any]
) -> tuple[Quart, Config]:
    from nanobot_api.app.wiring.bootstrap import build

    store: SessionStore | None = overrides.pop("store", None)
    attachments: Attachments | None = overrides.pop("attachments", None)
    if config is None and overrides.get("workspace") is None:
        overrides["workspace"] = app_workspace(agent.model)
    checked = configure(config, **overrides)
    return build(checked, agent=agent, store=store, attachments=attachments), checked
