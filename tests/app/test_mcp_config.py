"""tools.mcpServers: nanobot's shape accepted, mistakes named by key path, secrets known."""

from __future__ import annotations

import pytest

from nanobot_api.app.config import parse_config
from nanobot_api.app.mcp_config import mcp_secrets
from nanobot_api.app.wiring.redaction import configured_redactor
from nanobot_api.domain.errors import ConfigError

NANOBOT_SHAPE = {
    "tools": {
        "mcpServers": {
            "files": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-filesystem", "/data"],
                "env": {},
                "cwd": "",
                "toolTimeout": 30,
                "enabledTools": ["*"],
            },
            "search": {
                "url": "https://mcp.example.com/mcp",
                "headers": {"Authorization": "Bearer ${TOKEN}"},
                "type": "streamableHttp",
            },
            "events": {"url": "https://mcp.example.com/sse"},
            "local": {"url": "http://127.0.0.1:9000/mcp", "tool_timeout": 5},
        }
    }
}


def test_nanobots_shape_is_accepted_and_transports_inferred() -> None:
    tools = parse_config(NANOBOT_SHAPE, {"TOKEN": "abc-123-secret"}).tools
    servers = tools.mcp_servers
    assert [s.transport for s in servers.values()] == [
        "stdio",
        "streamableHttp",
        "sse",
        "streamableHttp",
    ]
    assert servers["files"].args[-1] == "/data"
    assert servers["search"].headers == {"Authorization": "Bearer abc-123-secret"}
    assert servers["local"].tool_timeout == 5
    assert "abc-123-secret" not in repr(tools)
    assert set(mcp_secrets(tools)) == {"Bearer abc-123-secret", "abc-123-secret"}


@pytest.mark.parametrize(
    ("server", "expected"),
    [
        ({}, 'tools.mcpServers.x: expected "command" (stdio) or "url"'),
        (
            {"command": "a", "url": "http://b"},
            'tools.mcpServers.x: expected "command" or "url", not both',
        ),
        (
            {"type": "sse", "command": "a"},
            "tools.mcpServers.x.url: expected an http(s) URL for sse",
        ),
        (
            {"type": "websocket", "url": "ws://x"},
            'tools.mcpServers.x.type: expected "stdio", "sse"',
        ),
        (
            {"command": "a", "toolTimeout": 0},
            "tools.mcpServers.x.toolTimeout: expected a number > 0",
        ),
        ({"command": "a", "enabledTools": "*"}, "tools.mcpServers.x.enabledTools: expected a list"),
        ({"command": "a", "headerz": {}}, "tools.mcpServers.x.headerz: unknown key"),
        ({"command": "a", "env": {"K": "${NOPE}"}}, "environment variable NOPE is not set"),
    ],
)
def test_each_mistake_names_its_key(server: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"tools": {"mcpServers": {"x": server}}}, {})
    assert caught.value.message.startswith(expected) or expected in caught.value.message


def test_the_one_redactor_masks_mcp_secrets_but_not_short_values() -> None:
    env = {"DEBUG": "1", "API_TOKEN": "tok-0123456789"}
    config = parse_config({"tools": {"mcpServers": {"x": {"command": "a", "env": env}}}}, {})
    redact = configured_redactor(config)
    assert redact("token tok-0123456789, debug 1") == "token ***, debug 1"
