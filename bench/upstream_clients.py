"""Why the LLM adapter uses aiohttp's client: the same minimal proxy, two HTTP clients.

Three processes on 127.0.0.1: an instant OpenAI-shaped upstream (aiohttp.web), a
minimal Quart + Hypercorn proxy that writes one SQLite row per request and forwards
the body upstream with either httpx or aiohttp, and this process as load generator.
Prints, per client, p50 latency at concurrency 1 and requests/s at concurrency 16.

    .venv/bin/python bench/upstream_clients.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _server import free_port, wait_listening

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hello"}]}).encode()


# --- the upstream ---------------------------------------------------------------------


def run_upstream(port: int) -> None:
    from aiohttp import web

    payload = json.dumps(ANSWER).encode()

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=payload, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- the proxy ------------------------------------------------------------------------


def run_proxy(port: int, upstream_port: int, client: str, db: Path) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config
    from quart import Quart, Response, request

    app = Quart(__name__)
    url = f"http://127.0.0.1:{upstream_port}/v1/chat/completions"
    conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    # As SqliteSessionStore does by default: durable across kill -9, no fsync per turn.
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE IF NOT EXISTS turns (k TEXT, body TEXT)")
    state: dict[str, Any] = {}

    @app.before_serving
    async def _open() -> None:
        if client == "httpx":
            try:
                import httpx
            except ImportError:  # this environment ships httpx as ``httpx2``
                import httpx2 as httpx  # type: ignore[no-redef]
            limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
            state["client"] = httpx.AsyncClient(limits=limits)
        else:
            import aiohttp

            state["client"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))

    @app.post("/v1/chat/completions")
    async def chat() -> Response:
        body = await request.get_data()
        if client == "httpx":
            answer = await state["client"].post(url, content=body)
            data = answer.content
        else:
            async with state["client"].post(url, data=body) as answer:
                data = await answer.read()
        await asyncio.to_thread(conn.execute, "INSERT INTO turns VALUES (?, ?)", ("k", data))
        return Response(data, content_type="application/json")

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    asyncio.run(serve(app, config))


# --- the load -------------------------------------------------------------------------


async def load(port: int, seconds: float) -> tuple[float, float]:
    """(p50 ms at concurrency 1, requests/s at concurrency 16)."""
    import aiohttp

    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as session:

        async def one() -> float:
            start = time.perf_counter()
            async with session.post(url, data=BODY, headers=headers) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            return time.perf_counter() - start

        for _ in range(200):  # warm-up: connections, caches
            await one()
        samples = [await one() for _ in range(500)]
        done = 0
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                await one()
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(16)))
        rate = done / (time.perf_counter() - started)
    return statistics.median(samples) * 1000, rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["upstream", "proxy"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--upstream-port", type=int)
    parser.add_argument("--client", choices=["httpx", "aiohttp"])
    parser.add_argument("--db", type=Path)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    if args.role == "upstream":
        run_upstream(args.port)
        return
    if args.role == "proxy":
        run_proxy(args.port, args.upstream_port, args.client, args.db)
        return

    me = [sys.executable, os.path.abspath(__file__)]
    upstream_port = free_port()
    upstream = subprocess.Popen([*me, "--role", "upstream", "--port", str(upstream_port)])
    try:
        wait_listening(upstream_port)
        print(f"{'client':8} {'p50 ms (c=1)':>13} {'req/s (c=16)':>13}")
        for client in ("httpx", "aiohttp"):
            port = free_port()
            with tempfile.TemporaryDirectory() as tmp:
                proxy = subprocess.Popen(
                    [
                        *me,
                        *("--role", "proxy", "--port", str(port), "--client", client),
                        *("--upstream-port", str(upstream_port), "--db", f"{tmp}/t.sqlite3"),
                    ],
                    stderr=subprocess.DEVNULL,  # unclosed-session noise when it is stopped
                )
                try:
                    wait_listening(port)
                    p50, rate = asyncio.run(load(port, args.seconds))
                finally:
                    proxy.terminate()
                    proxy.wait()
            print(f"{client:8} {p50:13.2f} {rate:13.0f}")
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
