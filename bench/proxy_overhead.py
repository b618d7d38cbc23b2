"""What nanobot adds on the way to the model: latency, throughput, first byte.

An instant OpenAI-shaped upstream runs in its own process; `nanobot serve` runs with a
provider pointing at it; this process is the load generator. Every figure is a turn
through nanobot minus the same request sent to the upstream directly.

    .venv/bin/python bench/proxy_overhead.py [--requests 2000]

Targets (issue 4): overhead p50 < 2 ms at concurrency 1; >= 1,000 requests/s at
concurrency 16 over 16 sessions; streaming first-byte overhead p50 < 2 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import free_port, nanobot_server, percentiles

ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def _chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
    return f"data: {json.dumps(body)}\n\n".encode()


STREAM = b"".join(
    [
        _chunk({"role": "assistant", "content": "hi"}),
        _chunk({}, "stop"),
        b'data: {"id": "c", "choices": [], "usage": '
        b'{"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}\n\n',
        b"data: [DONE]\n\n",
    ]
)


def run_upstream(port: int) -> None:
    """Answers every chat completion at once, as JSON or as one SSE burst."""
    from aiohttp import web

    payload = json.dumps(ANSWER).encode()

    async def handle(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("stream"):
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(STREAM)
            await resp.write_eof()
            return resp
        return web.Response(body=payload, content_type="application/json")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# Turns sent before timing starts (connections, imports, caches); counted in CPU a turn.
WARM_TURNS = 20

Measure = Callable[[aiohttp.ClientSession, str, dict[str, object]], Awaitable[float]]


async def full_turn(session: aiohttp.ClientSession, url: str, body: dict[str, object]) -> float:
    start = time.perf_counter()
    async with session.post(url, json=body) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"HTTP {resp.status}: {await resp.text()}")
    return time.perf_counter() - start


async def first_content_byte(
    session: aiohttp.ClientSession, url: str, body: dict[str, object]
) -> float:
    start = time.perf_counter()
    first = None
    async with session.post(url, json=body) as resp:
        async for line in resp.content:
            if first is None and b'"content"' in line and b'"content": ""' not in line:
                first = time.perf_counter() - start
        if resp.status != 200 or first is None:
            raise RuntimeError(f"HTTP {resp.status}: no content")
    return first


async def run_load(
    url: str,
    *,
    concurrency: int,
    sessions: int,
    total: int,
    stream: bool = False,
    measure: Measure = full_turn,
) -> tuple[list[float], float]:
    """Latencies of ``total`` turns spread over ``sessions``, and requests/s."""
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        for i in range(WARM_TURNS):
            await measure(s, url, _body(f"warm-{i}", stream))
        counter = iter(range(total))

        async def worker() -> None:
            for n in counter:
                latencies.append(await measure(s, url, _body(f"s{n % sessions}", stream)))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return latencies, len(latencies) / elapsed


def _body(session_id: str, stream: bool) -> dict[str, object]:
    body: dict[str, object] = {
        "messages": [{"role": "user", "content": "hello benchmark world"}],
        "session_id": session_id,
    }
    if stream:
        body["stream"] = True
    return body


def ms(value: float) -> str:
    return f"{value * 1000:7.2f}"


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def compare(direct: str, proxied: str, total: int, server_pid: int) -> None:
    print("non-streamed turn, overhead = nanobot - direct (ms)")
    print(
        " conc  sessions |  p50 direct  p50 nanobot  overhead |  p99 direct  p99 nanobot  overhead"
    )
    for concurrency in (1, 32):
        for sessions in (1, 100):
            d, _ = await run_load(direct, concurrency=concurrency, sessions=sessions, total=total)
            p, _ = await run_load(proxied, concurrency=concurrency, sessions=sessions, total=total)
            (d50, d99), (p50, p99) = percentiles(d), percentiles(p)
            print(
                f" {concurrency:4}  {sessions:8} | {ms(d50)}     {ms(p50)}   {ms(p50 - d50)} |"
                f" {ms(d99)}     {ms(p99)}   {ms(p99 - d99)}"
            )
    # Three rounds, alternating: this machine's speed drifts by tens of percent within
    # minutes, and one round can land in a slow spell.
    rates, direct_rates, cpu_ms = [], [], []
    for _ in range(3):
        direct_rates.append((await run_load(direct, concurrency=16, sessions=16, total=total))[1])
        before = cpu_seconds(server_pid)
        rates.append((await run_load(proxied, concurrency=16, sessions=16, total=total * 2))[1])
        cpu_ms.append((cpu_seconds(server_pid) - before) * 1000 / (total * 2 + WARM_TURNS))
    shown = ", ".join(f"{r:.0f}" for r in rates)
    print(f"requests/s at concurrency 16 over 16 sessions: nanobot {shown}", end="")
    print(f" (median {statistics.median(rates):.0f}; direct {statistics.median(direct_rates):.0f})")
    # The server is bound by one core: its CPU per turn is the figure that moves.
    print(f"server CPU per turn (ms): {', '.join(f'{c:.2f}' for c in cpu_ms)}")
    d, _ = await run_load(
        direct, concurrency=1, sessions=1, total=total, stream=True, measure=first_content_byte
    )
    p, _ = await run_load(
        proxied, concurrency=1, sessions=100, total=total, stream=True, measure=first_content_byte
    )
    (d50, d99), (p50, p99) = percentiles(d), percentiles(p)
    print(
        f"streamed, time to first content byte (ms): direct p50 {ms(d50)}, nanobot p50 {ms(p50)},"
        f" overhead p50 {ms(p50 - d50)}, p99 {ms(p99 - d99)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--upstream-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.upstream_port:
        run_upstream(args.upstream_port)
        return
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--upstream-port", str(port)]
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        config: dict[str, object] = {
            "agents": {"defaults": {"provider": "local", "model": "bench-model"}},
            "providers": {"local": {"apiBase": base, "apiKey": "sk-bench"}},
        }
        with nanobot_server(config) as (nanobot_port, process, _):
            asyncio.run(
                compare(
                    f"{base}/chat/completions",
                    f"http://127.0.0.1:{nanobot_port}/v1/chat/completions",
                    args.requests,
                    process.pid,
                )
            )
    finally:
        upstream.terminate()
        upstream.wait()


if __name__ == "__main__":
    main()
