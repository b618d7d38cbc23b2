"""The MCP supervisors over a fake tool server: start-up failure, recovery, restarts."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio
import anyio.lowlevel
import pytest

from nanobot_api.app.mcp import McpServerPlan, McpTools, Supervision
from nanobot_api.domain.errors import ToolServerFailed
from nanobot_api.domain.models import JsonObject, ToolContext, ToolSpec
from nanobot_api.domain.sessions import SessionKey
from nanobot_api.domain.tools import ToolOutput
from tests.app.test_message_tool import RecordingReply

FAST = Supervision(
    start_timeout_s=2,
    probe_s=0.05,
    probe_timeout_s=1,
    backoff_initial_s=0.01,
    backoff_max_s=0.05,
    stable_s=60,
)


class FlakyServer:
    """Refuses ``failures`` connections, then serves ``add``; ``alive`` False kills it."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.alive = True
        self.connections = 0

    def connect(self) -> AbstractAsyncContextManager[FlakyServer]:
        return self._connected()

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[FlakyServer]:
        await anyio.lowlevel.checkpoint()
        if self.failures:
            self.failures -= 1
            raise ToolServerFailed("command not found: fake")
        self.alive = True
        self.connections += 1
        yield self

    async def list_tools(self) -> tuple[ToolSpec, ...]:
        if not self.alive:
            raise ToolServerFailed("the connection to the server was lost")
        return (ToolSpec("add", "Adds.", {"type": "object"}),)

    async def call_tool(self, name: str, arguments: JsonObject) -> ToolOutput:
        if not self.alive:
            raise ToolServerFailed("the connection to the server was lost")
        return ToolOutput(f"{name} ok")


def context() -> ToolContext:
    return ToolContext(SessionKey("api", "s"), RecordingReply())


async def wait_until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await anyio.sleep(0.01)
    raise AssertionError("the condition did not come true within 5 s")


async def test_a_failed_start_is_logged_once_then_the_server_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = FlakyServer(failures=3)
    mcp = McpTools([McpServerPlan("fake", server)], FAST)
    with caplog.at_level(logging.INFO):
        await mcp.start()
        try:
            assert mcp.readiness() == {"mcp.fake": "failed: command not found: fake"}
            assert mcp.tools == ()
            await wait_until(lambda: mcp.ready)
            (tool,) = mcp.tools
            assert tool.spec.name == "mcp_fake_add"
            assert await tool.call({}, context()) == ToolOutput("add ok")
        finally:
            await mcp.stop()
    failures = [r for r in caplog.records if "failed to start" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].levelno == logging.WARNING


async def test_a_dead_server_is_restarted_and_meanwhile_calls_say_so() -> None:
    server = FlakyServer()
    mcp = McpTools([McpServerPlan("fake", server)], FAST)
    await mcp.start()
    try:
        (tool,) = mcp.tools
        server.alive = False
        server.failures = 2  # it does not come back at once
        lost = await tool.call({}, context())
        assert lost.is_error
        assert "failed during the call" in lost.text
        meanwhile = await tool.call({}, context())
        assert meanwhile.text.startswith("Error: MCP server 'fake' is not available right now")
        assert mcp.readiness()["mcp.fake"].startswith("restarting: ")
        await wait_until(lambda: mcp.ready)
        assert server.connections == 2
        assert mcp.tools == (tool,) or mcp.tools[0].spec == tool.spec
        assert (await mcp.tools[0].call({}, context())).text == "add ok"
    finally:
        await mcp.stop()


async def test_enabled_tools_filter_by_raw_or_wrapped_name() -> None:
    mcp = McpTools([McpServerPlan("fake", FlakyServer(), enabled_tools=("nope",))], FAST)
    await mcp.start()
    try:
        assert mcp.tools == ()
        assert mcp.ready
    finally:
        await mcp.stop()
