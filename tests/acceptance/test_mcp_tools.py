"""MCP tools end to end: the openai SDK -> nanobot -> the scripted model, with a real MCP
server (tests/mcp_servers.py, written with the ``mcp`` SDK) started over stdio or reached
over streamable HTTP."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import attrs
import pytest
from openai import AsyncOpenAI

from nanobot_api.app.config import Config
from nanobot_api.app.mcp_config import McpServerConfig, ToolsConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import RunningServer, running_server
from tests.acceptance.test_llm_chain import llm_config
from tests.upstream import Calls, ScriptedUpstream, Status, Text

pytestmark = pytest.mark.slow

SERVER_SCRIPT = str(Path(__file__).parents[1] / "mcp_servers.py")
SECRET = "tok-secret-0123456789"


def stdio_server(**settings: Any) -> McpServerConfig:
    return McpServerConfig(command=sys.executable, args=(SERVER_SCRIPT, "stdio"), **settings)


@asynccontextmanager
async def mcp_server(
    config: Config, up: ScriptedUpstream, servers: dict[str, McpServerConfig]
) -> AsyncIterator[tuple[AsyncOpenAI, RunningServer]]:
    config = attrs.evolve(llm_config(config, up.base_url), tools=ToolsConfig(servers))
    async with (
        running_server(build(config)) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="unused", max_retries=0) as client,
    ):
        yield client, server


async def turn(client: AsyncOpenAI, text: str, session: str = "s1") -> str:
    reply = await client.chat.completions.create(
        model="acme-large",
        messages=[{"role": "user", "content": text}],
        extra_body={"session_id": session},
    )
    return reply.choices[0].message.content or ""


def tool_results(up: ScriptedUpstream, request: int) -> list[str]:
    return [m["content"] for m in up.received[request].messages if m["role"] == "tool"]


async def readiness(server: RunningServer) -> dict[str, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.origin}/health/ready") as response,
    ):
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_a_turn_calls_two_mcp_tools_and_the_model_reads_their_results(
    config: Config,
) -> None:
    async with (
        ScriptedUpstream() as up,
        mcp_server(config, up, {"demo": stdio_server()}) as (
            client,
            server,
        ),
    ):
        up.add(
            Calls((("mcp_demo_add", '{"a": 2, "b": 3}'), ("mcp_demo_picture", "{}"))),
            Text("2 + 3 = 5, and a red dot."),
        )
        assert await turn(client, "add and draw") == "2 + 3 = 5, and a red dot."
        offered = {tool["function"]["name"]: tool["function"] for tool in up.received[0].tools}
        assert offered["mcp_demo_add"]["description"] == "Adds two integers."
        assert offered["mcp_demo_add"]["parameters"]["required"] == ["a", "b"]
        added, drawn = tool_results(up, 1)
        assert added == "5"
        assert drawn.startswith("a red dot\n[1 image(s) attached below")
        # The image reaches the model as an image part, after the results.
        last = up.received[1].messages[-1]
        assert last["role"] == "user"
        assert last["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
        assert (await readiness(server))["status"] == "ready"
        # History keeps the text of the results, not the image.
        up.add(Text("ok"))
        await turn(client, "again")
        kept = [m for m in up.received[2].messages if m["role"] == "tool"]
        assert [m["content"] for m in kept] == [added, drawn]
        assert not any(isinstance(m["content"], list) for m in up.received[2].messages)


async def test_schema_violations_timeouts_and_big_results_are_results(config: Config) -> None:
    servers = {"demo": stdio_server(tool_timeout=0.5)}
    async with ScriptedUpstream() as up, mcp_server(config, up, servers) as (client, _):
        up.add(
            Calls(
                (
                    ("mcp_demo_add", '{"a": "two", "b": 3}'),
                    ("mcp_demo_add", '{"a": 1}'),
                    ("mcp_demo_slow", '{"seconds": 30}'),
                    ("mcp_demo_big", '{"chars": 40000}'),
                    ("mcp_demo_nope", "{}"),
                )
            ),
            Text("done"),
        )
        with anyio.fail_after(20):
            assert await turn(client, "go") == "done"
        wrong, missing, slow, big, unknown = tool_results(up, 1)
        assert wrong.startswith("Error: invalid arguments for mcp_demo_add: arguments.a: ")
        assert "'two' is not of type 'integer'" in wrong
        assert "'b' is a required property" in missing
        assert slow == "Error: mcp_demo_slow did not finish within 0.5 s and was stopped."
        assert big.startswith("y" * 16_000 + "\n[... truncated: 24,000 more characters]")
        assert unknown.startswith("Error: there is no tool named 'mcp_demo_nope'")


async def test_enabled_tools_limit_what_is_offered_and_steps_show_as_progress_events(
    config: Config,
) -> None:
    servers = {"demo": stdio_server(enabled_tools=("add", "mcp_demo_pid"))}
    async with ScriptedUpstream() as up, mcp_server(config, up, servers) as (client, _):
        await turn(client, "hi")
        assert sorted(t["function"]["name"] for t in up.received[0].tools) == [
            "mcp_demo_add",
            "mcp_demo_pid",
            "message",
        ]
        up.add(Calls((("mcp_demo_add", '{"a": 1, "b": 1}'), ("mcp_demo_add", "{}"))), Text("ok"))
        stream = await client.responses.create(
            input="add",
            stream=True,
            include=["nanobot.tool_events"],  # type: ignore[list-item]
        )
        steps = [
            (e.type, e.model_extra.get("name") if e.model_extra else None)
            async for e in stream
            if e.type.startswith("nanobot.")
        ]
        assert [kind for kind, _ in steps] == [
            "nanobot.tool.started",
            "nanobot.tool.started",
            "nanobot.tool.done",
            "nanobot.tool.failed",
        ]
        assert {name for _, name in steps} == {"mcp_demo_add"}


async def test_a_crashed_server_is_restarted_and_meanwhile_calls_say_so(config: Config) -> None:
    async with (
        ScriptedUpstream() as up,
        mcp_server(config, up, {"demo": stdio_server()}) as (
            client,
            server,
        ),
    ):
        up.add(Calls((("mcp_demo_pid", "{}"), ("mcp_demo_die", "{}"))), Text("crashed"))
        assert await turn(client, "crash it") == "crashed"
        first_pid, died = tool_results(up, 1)
        assert died.startswith("Error: MCP server 'demo' failed during the call")
        assert "being restarted" in died
        assert (await readiness(server))["status"] == "degraded"
        for _ in range(200):  # the restart waits a backoff of about a second
            if (await readiness(server))["status"] == "ready":
                break
            await anyio.sleep(0.1)
        up.add(Calls((("mcp_demo_pid", "{}"),)), Text("back"))
        assert await turn(client, "again") == "back"
        second_pid = tool_results(up, 3)[-1]
        assert second_pid.isdigit()
        assert second_pid != first_pid


async def test_a_server_failing_at_start_up_leaves_the_api_serving_and_degraded(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    broken = McpServerConfig(
        command=sys.executable, args=(SERVER_SCRIPT, "fail"), env={"API_TOKEN": SECRET}
    )
    servers = {"demo": stdio_server(), "broken": broken}
    with caplog.at_level(logging.INFO):
        async with ScriptedUpstream() as up, mcp_server(config, up, servers) as (client, server):
            assert await turn(client, "hi") == "echo: hi"
            names = {t["function"]["name"] for t in up.received[0].tools}
            assert "mcp_demo_add" in names
            assert not any(name.startswith("mcp_broken_") for name in names)
            body = await readiness(server)
    assert body["status"] == "degraded"
    assert list(body["degraded"]) == ["mcp.broken"]
    assert body["degraded"]["mcp.broken"].startswith("failed: the server closed the connection")
    lines = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    failures = [line for line in lines if "failed to start" in line]
    assert len(failures) == 1
    assert "cannot start: *** refused" in failures[0]  # its stderr, the secret redacted
    assert not any(SECRET in r.getMessage() for r in caplog.records)


async def test_stdio_servers_get_only_their_env_plus_path_and_home(config: Config) -> None:
    servers = {"demo": stdio_server(env={"API_TOKEN": SECRET})}
    async with ScriptedUpstream() as up, mcp_server(config, up, servers) as (client, _):
        up.add(Calls((("mcp_demo_env_names", "{}"),)), Text("ok"))
        await turn(client, "env")
        (names,) = tool_results(up, 1)
        assert set(names.split()) - {"LC_CTYPE"} == {"API_TOKEN", "HOME", "PATH"}


async def test_a_failed_turn_leaves_no_trace_of_its_tool_calls(config: Config) -> None:
    async with (
        ScriptedUpstream() as up,
        mcp_server(config, up, {"demo": stdio_server()}) as (
            client,
            _,
        ),
    ):
        up.add(Calls((("mcp_demo_add", '{"a": 1, "b": 1}'),)), Status(400, "refused"))
        with pytest.raises(Exception, match="refused"):
            await turn(client, "fails")
        up.add(Text("fresh"))
        assert await turn(client, "next") == "fresh"
        assert [m["role"] for m in up.received[2].messages] == ["user"]


@contextmanager
def http_mcp_server(tmp_path: Path, token: str, mode: str = "http") -> Iterator[str]:
    port_file = tmp_path / f"{mode}-port"
    process = subprocess.Popen(
        [sys.executable, SERVER_SCRIPT, mode, str(port_file), token],
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text():
                break
            if process.poll() is not None:
                raise RuntimeError("the MCP test server exited")
            import time

            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text()}/{'sse' if mode == 'sse' else 'mcp'}"
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_url_servers_get_their_headers_and_serve_tools(
    config: Config, tmp_path: Path
) -> None:
    """Streamable HTTP and SSE (inferred from the /sse path); a wrong token is refused."""
    with http_mcp_server(tmp_path, SECRET) as url, http_mcp_server(tmp_path, SECRET, "sse") as sse:
        auth = {"Authorization": f"Bearer {SECRET}"}
        servers = {
            "remote": McpServerConfig(url=url, headers=auth),
            "events": McpServerConfig(url=sse, headers=auth),
            "refused": McpServerConfig(url=url, headers={"Authorization": "Bearer wrong-token-x"}),
        }
        async with ScriptedUpstream() as up, mcp_server(config, up, servers) as (client, server):
            calls = (
                ("mcp_remote_add", '{"a": 20, "b": 22}'),
                ("mcp_events_add", '{"a": 1, "b": 2}'),
            )
            up.add(Calls(calls), Text("42 and 3"))
            assert await turn(client, "add remotely") == "42 and 3"
            assert tool_results(up, 1) == ["42", "3"]
            body = await readiness(server)
    assert list(body["degraded"]) == ["mcp.refused"]
    assert "HTTP 401 from" in body["degraded"]["mcp.refused"]
    assert SECRET not in json.dumps(body)
