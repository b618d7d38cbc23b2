"""The chat POST as a bare ASGI handler (as served) against the same as a Quart route.

One server process, the instant echo agent, the same pipeline in front of both: the
served ``POST /v1/chat/completions`` and, added here only, a Quart route
``POST /x/chat`` doing the same work with the same functions. Alternating rounds;
the server's CPU time per turn is the steady figure on a shared machine. Why the
chat POST is not a Quart route: docs/discussion/chat-endpoint.md.

    .venv/bin/python bench/chat_route.py [--requests 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import free_port, wait_healthy

PATHS = {"ASGI handler": "/v1/chat/completions", "Quart route": "/x/chat"}


def serve(port: int) -> None:
    import anyio
    from quart import Response, request

    from nanobot_api.adapters.http.answers import completion_json
    from nanobot_api.adapters.http.app import create_quart_app
    from nanobot_api.adapters.http.chat_endpoint import read_chat_request
    from nanobot_api.adapters.http.ids import new_id
    from nanobot_api.adapters.http.pipeline.error_rendering import json_response
    from nanobot_api.adapters.http.serve import serve_app
    from nanobot_api.adapters.http.settings import HttpSettings
    from nanobot_api.adapters.http.streaming import SilentReply
    from nanobot_api.adapters.storage.memory import InMemorySessionStore
    from nanobot_api.app.chat import ChatService
    from nanobot_api.app.echo import EchoAgent
    from nanobot_api.domain.attachments import Document, Image, Upload

    class NoFiles:
        async def accept(
            self, uploads: Sequence[Upload], session: object = None
        ) -> tuple[tuple[Image, ...], tuple[Document, ...]]:
            return (), ()

    service = ChatService(EchoAgent(), InMemorySessionStore(), NoFiles(), timeout_s=30)
    settings = HttpSettings()
    app = create_quart_app(service, settings)

    @app.post("/x/chat")
    async def quart_chat() -> Response:
        data = await request.get_data()

        async def chunks() -> AsyncIterator[bytes]:
            yield data

        headers = {name.lower(): value for name, value in request.headers.items()}
        chat = await read_chat_request(headers, chunks(), settings)
        prepared = await service.prepare(chat)
        result = await service.run(prepared, SilentReply())
        answer = completion_json(
            new_id("chatcmpl-"), int(time.time()), service.model, result.text, result.usage
        )
        response = json_response(answer)
        response.headers["X-Session-Id"] = prepared.session.session_id
        return response

    anyio.run(lambda: serve_app(app, host="127.0.0.1", port=port), backend="asyncio")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(url: str, total: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        numbers = iter(range(total))

        async def worker() -> None:
            for n in numbers:
                body = {
                    "messages": [{"role": "user", "content": "hello"}],
                    "session_id": f"s{n % 16}",
                }
                start = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"HTTP {response.status}")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - start), latencies


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.port:
        serve(args.port)
        return
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--port", str(port)], stderr=subprocess.DEVNULL
    )
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in PATHS}
    try:
        wait_healthy(port)
        for _ in range(3):
            for name, path in PATHS.items():
                url = f"http://127.0.0.1:{port}{path}"
                before = cpu_seconds(server.pid)
                rate, _ = asyncio.run(load(url, args.requests, 16))
                cpu_ms = (cpu_seconds(server.pid) - before) * 1000 / args.requests
                _, single = asyncio.run(load(url, args.requests // 5, 1))
                rows[name].append((cpu_ms, rate, statistics.median(single) * 1000))
    finally:
        server.terminate()
        server.wait()
    print(f"chat POST, instant echo agent ({os.cpu_count()} cores, shared with other jobs)")
    print(" served as      | server CPU/turn (ms) | req/s c=16       | p50 c=1 (ms)")
    for name, runs in rows.items():
        cpu = ", ".join(f"{c:.2f}" for c, _, _ in runs)
        rate = ", ".join(f"{r:.0f}" for _, r, _ in runs)
        p50 = ", ".join(f"{p:.2f}" for _, _, p in runs)
        print(f" {name:14} | {cpu:20} | {rate:16} | {p50}")


if __name__ == "__main__":
    main()
