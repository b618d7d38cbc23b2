"""`nanobot tools list` as a user runs it, and tools.mcpServers in config.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.acceptance.test_cli import run_nanobot
from tests.acceptance.test_mcp_tools import SECRET, SERVER_SCRIPT


@pytest.mark.slow
def test_tools_list_prints_each_server_its_state_and_its_tools(tmp_path: Path) -> None:
    config = {
        "tools": {
            "mcpServers": {
                "demo": {
                    "command": sys.executable,
                    "args": [SERVER_SCRIPT, "stdio"],
                    "enabledTools": ["add", "mcp_demo_picture"],
                },
                "broken": {
                    "command": sys.executable,
                    "args": [SERVER_SCRIPT, "fail"],
                    "env": {"API_TOKEN": "${TOKEN}"},
                },
            }
        }
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = run_nanobot("tools", "list", "-c", str(path), home=tmp_path, TOKEN=SECRET)
    lines = result.stdout.splitlines()
    assert lines[1].startswith("message  built-in  Send a message")
    assert lines[2:5] == [
        "demo  stdio  ready, 2 tool(s)",
        "  mcp_demo_add  Adds two integers.",
        "  mcp_demo_picture  A caption and a 1x1 PNG.",
    ]
    assert lines[5].startswith("broken  stdio  failed: the server closed the connection")
    assert "cannot start: *** refused" in lines[5]
    assert SECRET not in result.stdout + result.stderr
    assert result.returncode == 1


def test_a_server_with_nothing_to_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"tools": {"mcpServers": {"x": {"type": "stdio"}}}}))
    result = run_nanobot("tools", "list", "-c", str(path), home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "nanobot: tools.mcpServers.x.command: expected a command to start the server"
    )
