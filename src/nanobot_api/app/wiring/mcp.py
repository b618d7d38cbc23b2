"""The MCP servers of ``tools.mcpServers``, made from configuration and tied to the app."""

from __future__ import annotations

from quart import Quart

from nanobot_api.adapters.tools.mcp_sdk import McpSdkConnector, McpServerTarget
from nanobot_api.app.mcp import McpServerPlan, McpTools, Supervision
from nanobot_api.app.mcp_config import ToolsConfig
from nanobot_api.domain.redaction import Redactor


def mcp_tools_for(
    config: ToolsConfig, redactor: Redactor, supervision: Supervision | None = None
) -> McpTools:
    """Supervisors for every server in ``tools.mcpServers`` (none started yet);
    ``redactor`` (the server's one, holding these servers' secrets) masks what they say."""
    plans = []
    for name, server in config.mcp_servers.items():
        target = McpServerTarget(
            server.transport,
            command=server.command,
            args=server.args,
            env=server.env,
            cwd=server.cwd,
            url=server.url,
            headers=server.headers,
        )
        connector = McpSdkConnector(
            name, target, redactor=redactor, call_timeout_s=server.tool_timeout
        )
        plans.append(McpServerPlan(name, connector, server.tool_timeout, server.enabled_tools))
    return McpTools(plans, supervision or Supervision())


def install_mcp(app: Quart, mcp: McpTools) -> None:
    """Starts the servers with the app's serving (before it answers) and stops them with it."""
    app.before_serving(mcp.start)
    app.after_serving(mcp.stop)
