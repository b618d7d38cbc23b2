"""``tools.mcpServers``: the MCP servers whose tools the agent offers, in nanobot's shape.

    "tools": {"mcpServers": {
      "files": {"command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
                "env": {}, "cwd": "", "toolTimeout": 30, "enabledTools": ["*"]},
      "search": {"url": "https://mcp.example.com/mcp",
                 "headers": {"Authorization": "Bearer ${TOKEN}"}}
    }}

Read by ``app.config``'s strict converter (unknown keys refused, ``${ENV}`` expanded in
every value); the rules that relate two keys are checked by :func:`check_tools`.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs

from nanobot_api.app.config_rules import checked, config_error, show

Transport = Literal["stdio", "sse", "streamableHttp"]
TRANSPORTS: tuple[Transport, ...] = ("stdio", "sse", "streamableHttp")


@attrs.frozen
class McpServerConfig:
    """One MCP server: a command to start (stdio) or a URL to reach (SSE, streamable HTTP).

    ``type`` may be left out: a ``command`` means stdio; a ``url`` means streamable HTTP,
    or SSE when its path ends in ``/sse`` (as nanobot infers it). ``env`` is the whole
    environment a stdio server gets besides ``PATH`` and ``HOME``; ``env`` and ``headers``
    values are secrets, never shown. ``toolTimeout`` bounds each call, in seconds.
    """

    type: str = checked("", lambda v: v in ("", *TRANSPORTS), '"stdio", "sse" or "streamableHttp"')
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = attrs.field(factory=dict, repr=False)
    cwd: str = ""
    url: str = ""
    headers: dict[str, str] = attrs.field(factory=dict, repr=False)
    tool_timeout: float = checked(30.0, lambda v: 0 < v < math.inf, "a number > 0")
    enabled_tools: tuple[str, ...] = ("*",)

    @property
    def transport(self) -> Transport:
        """The transport given, or the one inferred from ``command`` / ``url``."""
        if self.type in TRANSPORTS:
            return self.type
        if self.command:
            return "stdio"
        return "sse" if self.url.rstrip("/").endswith("/sse") else "streamableHttp"


@attrs.frozen
class ToolsConfig:
    """The agent's tools besides ``message``: those of MCP servers, by server name."""

    mcp_servers: dict[str, McpServerConfig] = attrs.field(factory=dict)


def check_tools(tools: ToolsConfig) -> None:
    """Raises ConfigError for a server with nothing to start or reach, or with both."""
    for name, server in tools.mcp_servers.items():
        path = f"tools.mcpServers.{name}" if name else "tools.mcpServers"
        if not name.strip():
            raise config_error(path, "expected a server name, got an empty key")
        if not server.type and not server.command and not server.url:
            raise config_error(path, 'expected "command" (stdio) or "url" (SSE, streamable HTTP)')
        if not server.type and server.command and server.url:
            raise config_error(path, 'expected "command" or "url", not both (or set "type")')
        transport = server.transport
        if transport == "stdio" and not server.command:
            raise config_error(f"{path}.command", "expected a command to start the server")
        if transport != "stdio" and not server.url.startswith(("http://", "https://")):
            raise config_error(
                f"{path}.url", f"expected an http(s) URL for {transport}, got {show(server.url)}"
            )


def mcp_secrets(tools: ToolsConfig) -> tuple[str, ...]:
    """Every configured value that must never be shown: each server's ``env`` and
    ``headers`` values (an ``Authorization`` header, a token in the environment). The
    one redactor (``app.redaction``) takes them beside the other secrets."""
    values = [
        value
        for server in tools.mcp_servers.values()
        for value in (*server.env.values(), *server.headers.values())
    ]
    # "Bearer abc": the token alone may also appear without its scheme.
    values += [value.split(" ", 1)[1] for value in values if " " in value.strip()]
    return tuple(sorted({value.strip() for value in values if value.strip()}))
