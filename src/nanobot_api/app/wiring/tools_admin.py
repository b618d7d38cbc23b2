"""``nanobot tools list``: the tools the agent would offer, each MCP server started to ask."""

from __future__ import annotations

from typing import TextIO

from nanobot_api.app.config import Config
from nanobot_api.app.mcp import READY
from nanobot_api.app.message_tool import DESCRIPTION as MESSAGE_DESCRIPTION
from nanobot_api.app.wiring.mcp import mcp_tools_for
from nanobot_api.app.wiring.redaction import configured_redactor
from nanobot_api.domain.text import printable, shorten

_SUMMARY_CHARS = 100


async def list_tools(config: Config, out: TextIO) -> int:
    """Prints the built-in tool, then each MCP server (its state and transport) and its
    tools as the model sees them; stops the servers again. Exit code 1 if a server did
    not start, else 0. Server-given text is shown with control characters escaped."""
    if config.provider is None:
        print("(no provider configured: the offline echo agent calls no tools)", file=out)
    print(f"message  built-in  {_summary(MESSAGE_DESCRIPTION)}", file=out)
    servers = config.tools.mcp_servers
    if not servers:
        print("(no MCP servers: add tools.mcpServers to the config)", file=out)
        return 0
    mcp = mcp_tools_for(config.tools, configured_redactor(config))
    await mcp.start()
    try:
        states = mcp.health()
        for name, server in servers.items():
            tools = mcp.tools_of(name)
            state = states[name]
            count = f", {len(tools)} tool(s)" if state == READY else ""
            print(f"{_shown(name)}  {server.transport}  {_shown(state)}{count}", file=out)
            for tool in tools:
                print(f"  {tool.spec.name}  {_summary(tool.spec.description)}", file=out)
    finally:
        await mcp.stop()
    return 0 if mcp.ready else 1


def _summary(text: str) -> str:
    line = _shown(" ".join(text.split()))
    return shorten(line, _SUMMARY_CHARS)


def _shown(text: str) -> str:
    # A server names its own tools and describes them: never let it drive the terminal.
    return printable(text)
