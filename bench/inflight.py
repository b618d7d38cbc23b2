"""Many streamed turns in flight at once: what the server adds to each.

A stand-in model (its own process) streams ``--tokens`` deltas ``--gap-ms`` apart for
every request. ``--turns`` streamed turns start at once, each in its own session,
first straight to the model and then through `nanobot serve` pointed at it; each
turn's time is from its request to its ``[DONE]``. Both rounds run in one go, side by
side, so they share the machine's mood.

    .venv/bin/python bench/inflight.py [--turns 1000] [--tokens 50] [--gap-ms 20]

Target (issue 12): turn p50 through nanobot at most 1.5x the model's own at the same
load. The machine's other jobs move both columns; the ratio is the figure to read.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import free_port, nanobot_server, percentiles, wait_healthy, wait_listening
from proxy_overhead import cpu_seconds

BACKLOG = 4096  # 1,000 connects at once overflow the usual 100-128 (then SYN retries)


def run_model(port: int, tokens: int, gap_s: float) -> None:
    """An OpenAI-shaped model: ``tokens`` deltas ``gap_s`` apart, then usage and [DONE]."""
    from aiohttp import web

    def chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
        body = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "m"}
        body["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    usage = b'data: {"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1}}\n\n'

    async def handle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(chunk({"role": "assistant"}))
        for n in range(tokens):
            await asyncio.sleep(gap_s)
            await response.write(chunk({"content": f"tok{n} "}))
        await response.write(chunk({}, "stop") + usage + b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None, backlog=BACKLOG)


async def one_turn(session: aiohttp.ClientSession, url: str, name: str) -> float:
    body = {
        "messages": [{"role": "user", "content": "hello"}],
        "session_id": f"inflight-{name}",
        "stream": True,
    }
    start = time.perf_counter()
    async with session.post(url, json=body) as response:
        tail = b""
        async for data in response.content.iter_any():
            tail = (tail + data)[-64:]
        if response.status != 200 or b"[DONE]" not in tail:
            raise RuntimeError(f"HTTP {response.status}: no [DONE]")
    return time.perf_counter() - start


async def burst(url: str, turns: int, round_: int) -> list[float]:
    """``turns`` streamed turns started together, each in a new session; each one's
    seconds to [DONE]."""
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one_turn(session, url, f"{round_}-warm")  # connections, imports, a session
        names = (f"{round_}-{n}" for n in range(turns))
        return list(await asyncio.gather(*(one_turn(session, url, name) for name in names)))


@contextmanager
def floor_server(upstream: str) -> Iterator[tuple[int, subprocess.Popen[bytes], float]]:
    """bench/relay_floor.py in its own process, in nanobot's place."""
    port = free_port()
    relay = Path(__file__).with_name("relay_floor.py")
    process = subprocess.Popen([sys.executable, str(relay), str(port), upstream])
    try:
        yield port, process, wait_healthy(port)
    finally:
        process.terminate()
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=50)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    # One burst each way drifts with the machine (its speed moves 2x here); rounds
    # alternate the two, and the median of their ratios is the figure to read.
    parser.add_argument("--rounds", type=int, default=3)
    # A bare aiohttp relay in nanobot's place (bench/relay_floor.py): the floor.
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--model-port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.model_port:
        run_model(args.model_port, args.tokens, args.gap_ms / 1000)
        return
    port = free_port()
    model = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--model-port",
            str(port),
            "--tokens",
            str(args.tokens),
            "--gap-ms",
            str(args.gap_ms),
        ]
    )
    rows: list[tuple[float, float, float, float, float]] = []
    try:
        wait_listening(port)
        base = f"http://127.0.0.1:{port}/v1"
        config: dict[str, object] = {
            "agents": {"defaults": {"provider": "local", "model": "bench-model"}},
            "providers": {"local": {"apiBase": base, "apiKey": "sk-bench"}},
            "api": {"timeout": 300},
        }
        serving = floor_server(f"{base}/chat/completions") if args.floor else nanobot_server(config)
        with serving as (nanobot_port, server, _):
            proxy = f"http://127.0.0.1:{nanobot_port}/v1/chat/completions"
            for round_ in range(args.rounds):
                direct = asyncio.run(burst(f"{base}/chat/completions", args.turns, round_))
                before = cpu_seconds(server.pid)
                proxied = asyncio.run(burst(proxy, args.turns, round_))
                server_cpu = cpu_seconds(server.pid) - before
                rows.append((*percentiles(direct), *percentiles(proxied), server_cpu))
    finally:
        model.terminate()
        model.wait()
    print(
        f"{args.turns} streamed turns at once, {args.tokens} tokens {args.gap_ms:g} ms apart "
        f"({os.cpu_count()} cores, shared with other jobs), {args.rounds} rounds"
        + (", through the bare relay of bench/relay_floor.py, not nanobot" if args.floor else "")
    )
    print(
        "        model p50 / p99 (s)   "
        + ("relay  " if args.floor else "nanobot")
        + " p50 / p99 (s)   ratio p50 / p99   server CPU a turn"
    )
    for n, (d50, d99, p50, p99, cpu) in enumerate(rows, 1):
        print(
            f" round {n}   {d50:5.2f} / {d99:5.2f}          {p50:5.2f} / {p99:5.2f}"
            f"          {p50 / d50:4.2f} / {p99 / d99:4.2f}       {cpu * 1000 / args.turns:.2f} ms"
        )
    ratio50 = statistics.median(p50 / d50 for d50, _, p50, _, _ in rows)
    ratio99 = statistics.median(p99 / d99 for _, d99, _, p99, _ in rows)
    # Other jobs on the machine move the times by tens of percent; the server's own CPU
    # time moves less, and tells a change's cost apart from the machine's mood.
    cpu = statistics.median(row[4] for row in rows) * 1000 / args.turns
    print(
        f" median ratio p50 {ratio50:.2f} (target: <= 1.5), p99 {ratio99:.2f}; "
        f"server CPU {cpu:.2f} ms a turn"
    )


if __name__ == "__main__":
    main()
