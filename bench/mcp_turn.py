"""What two MCP tool calls add to a turn, against an instant stand-in model.

A stand-in OpenAI-shaped model runs in its own process; `nanobot serve` runs with a
provider pointing at it and one stdio MCP server (written with the `mcp` SDK, started
from this file); this process sends the turns, one at a time, each in a fresh session.

- plain turn: the model answers at once (one model call);
- tool turn: the model asks for `mcp_bench_add` twice in one answer, reads both
  results and answers (two model calls, two MCP calls over stdio).

    .venv/bin/python bench/mcp_turn.py [--turns 200]

Printed: p50/p99 of both, their difference, the direct round trip to the stand-in
model (the extra model call's share of the difference), and the server's CPU per turn.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import free_port, nanobot_server, percentiles
from proxy_overhead import cpu_seconds, ms

TOOL_WORDS = "use two tools"


def run_mcp_server() -> None:
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bench")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Adds two integers."""
        return a + b

    server.run()


def answer(message: dict[str, object], usage: int = 1) -> dict[str, object]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": usage, "completion_tokens": 1, "total_tokens": usage + 1},
    }


def run_upstream(port: int) -> None:
    """Two tool calls when the user asks for tools and no result is in yet, else text."""
    from aiohttp import web

    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": "mcp_bench_add", "arguments": json.dumps({"a": i, "b": 2})},
        }
        for i in (1, 2)
    ]
    with_tools = json.dumps(answer({"role": "assistant", "content": None, "tool_calls": calls}))
    text = json.dumps(answer({"role": "assistant", "content": "done"}))

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        last = body["messages"][-1]
        wants = last["role"] == "user" and TOOL_WORDS in json.dumps(last["content"])
        return web.Response(body=with_tools if wants else text, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


async def turn(session: aiohttp.ClientSession, url: str, text: str, n: int) -> float:
    body = {"messages": [{"role": "user", "content": text}], "session_id": f"b{n}"}
    start = time.perf_counter()
    async with session.post(url, json=body) as response:
        payload = await response.json()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload}")
    return time.perf_counter() - start


async def compare(upstream: str, url: str, turns: int, pid: int) -> None:
    plain: list[float] = []
    tools: list[float] = []
    direct: list[float] = []
    cpu = {"plain": 0.0, "tools": 0.0}
    async with aiohttp.ClientSession() as session:
        for n in range(20):  # warm the paths, the MCP connection included
            await turn(session, url, TOOL_WORDS if n % 2 else "hi", -n - 1)
        # Alternating, so a slow spell of this shared machine hits both alike.
        for n in range(turns):
            before = cpu_seconds(pid)
            plain.append(await turn(session, url, "hello", 2 * n))
            middle = cpu_seconds(pid)
            tools.append(await turn(session, url, f"please {TOOL_WORDS}", 2 * n + 1))
            cpu["plain"] += middle - before
            cpu["tools"] += cpu_seconds(pid) - middle
            start = time.perf_counter()
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with session.post(upstream, json=body) as response:
                await response.read()
            direct.append(time.perf_counter() - start)
    (p50, p99), (t50, t99), (d50, _) = percentiles(plain), percentiles(tools), percentiles(direct)
    print(f"{turns} turns each, one at a time (ms)      p50      p99")
    print(f" plain turn (1 model call)          {ms(p50)}  {ms(p99)}")
    print(f" turn with 2 MCP calls (2 model)    {ms(t50)}  {ms(t99)}")
    print(f" difference                         {ms(t50 - p50)}  {ms(t99 - p99)}")
    print(f" one direct stand-in model call     {ms(d50)}")
    each = (t50 - p50 - d50) / 2
    print(f" => per MCP call, beyond the extra model call: about {ms(each).strip()} ms (p50)")
    per_turn = {k: v * 1000 / turns for k, v in cpu.items()}
    print(
        f"server CPU per turn (ms): plain {per_turn['plain']:.2f}, "
        f"with 2 MCP calls {per_turn['tools']:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mcp-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mcp_server:
        run_mcp_server()
        return
    if args.upstream_port:
        run_upstream(args.upstream_port)
        return
    port = free_port()
    me = os.path.abspath(__file__)
    upstream = subprocess.Popen([sys.executable, me, "--upstream-port", str(port)])
    try:
        base = f"http://127.0.0.1:{port}/v1"
        config: dict[str, object] = {
            "agents": {"defaults": {"provider": "local", "model": "bench-model"}},
            "providers": {"local": {"apiBase": base, "apiKey": "sk-bench"}},
            "tools": {
                "mcpServers": {"bench": {"command": sys.executable, "args": [me, "--mcp-server"]}}
            },
        }
        with nanobot_server(config) as (nanobot_port, process, _):
            asyncio.run(
                compare(
                    f"{base}/chat/completions",
                    f"http://127.0.0.1:{nanobot_port}/v1/chat/completions",
                    args.turns,
                    process.pid,
                )
            )
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
