"""What the HTTP server itself costs a turn: the same `nanobot serve` (same config,
same composition, same pipeline) served by Hypercorn, as shipped, and by uvicorn with
its C parser (httptools), alternating in one run.

The uvicorn side is this bench's own shim: it replaces the function `nanobot serve`
serves with, nothing else (see `serve_with_uvicorn`). It is a measurement for the
decision in docs/discussion/streaming-relay.md, not a supported way to run nanobot-api.

    .venv/bin/python bench/http_servers.py [--rounds 3] [--requests 1000] [--turns 1000]

Two loads, each with its stand-in model in its own process: c=16 non-streamed turns
over 16 sessions (requests/s and server CPU a turn), and `--turns` streamed turns at
once, 50 tokens 20 ms apart (turn p50 over the model's own, and server CPU a turn).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _server import free_port, nanobot_server, percentiles, wait_listening
from inflight import burst
from proxy_overhead import WARM_TURNS, cpu_seconds, run_load

SERVERS = ("hypercorn", "uvicorn")


async def serve_with_uvicorn(
    app: Any,
    *,
    host: str | None = None,
    port: int | None = None,
    sock: socket.socket | None = None,
    shutdown_trigger: Callable[..., Awaitable[None]] | None = None,
) -> None:
    """`serve_app`'s signature, served by uvicorn on the socket `nanobot serve` bound."""
    import uvicorn

    config = uvicorn.Config(
        app,
        http="httptools",
        loop="asyncio",
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
        backlog=4096,
        timeout_keep_alive=75,
    )
    server = uvicorn.Server(config)

    async def stop_when_triggered() -> None:
        if shutdown_trigger is not None:
            await shutdown_trigger()
            server.should_exit = True

    stopping = asyncio.ensure_future(stop_when_triggered())
    try:
        await server.serve(sockets=None if sock is None else [sock])
    finally:
        stopping.cancel()


def run_nanobot_on_uvicorn(argv: list[str]) -> None:
    """`nanobot serve ...` in this process, with uvicorn in Hypercorn's place."""
    from nanobot_api import main as entry
    from nanobot_api.app.wiring import serving

    setattr(serving, "serve_app", serve_with_uvicorn)  # noqa: B010 (a module, patched)
    sys.argv = ["nanobot", *argv]
    entry.main()


def command(server: str) -> list[str] | None:
    if server == "hypercorn":
        return None  # _server's default: python -m nanobot_api.main
    return [sys.executable, os.path.abspath(__file__), "--as-uvicorn"]


def ratio_round(
    model_url: str, proxy_url: str, turns: int, n: int, pid: int
) -> tuple[float, float]:
    direct = asyncio.run(burst(model_url, turns, n))
    before = cpu_seconds(pid)
    proxied = asyncio.run(burst(proxy_url, turns, n))
    cpu_ms = (cpu_seconds(pid) - before) * 1000 / turns
    return percentiles(proxied)[0] / percentiles(direct)[0], cpu_ms


def rate_round(url: str, requests: int, pid: int) -> tuple[float, float]:
    before = cpu_seconds(pid)
    _, rate = asyncio.run(run_load(url, concurrency=16, sessions=16, total=requests))
    return rate, (cpu_seconds(pid) - before) * 1000 / (requests + WARM_TURNS)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--as-uvicorn":
        run_nanobot_on_uvicorn(sys.argv[2:])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=1000)
    args = parser.parse_args()
    instant_port, stream_port = free_port(), free_port()
    here = os.path.dirname(os.path.abspath(__file__))
    models = [  # the two benches' own stand-in models, each in its own process
        subprocess.Popen(
            [sys.executable, f"{here}/proxy_overhead.py", "--upstream-port", str(instant_port)]
        ),
        subprocess.Popen([sys.executable, f"{here}/inflight.py", "--model-port", str(stream_port)]),
    ]
    rows: dict[str, list[tuple[float, float, float, float]]] = {name: [] for name in SERVERS}
    try:
        wait_listening(instant_port)
        wait_listening(stream_port)
        for n in range(args.rounds):
            for name in SERVERS:
                for load, port in (("instant", instant_port), ("stream", stream_port)):
                    config: dict[str, object] = {
                        "agents": {"defaults": {"provider": "local", "model": "bench"}},
                        "providers": {
                            "local": {"apiBase": f"http://127.0.0.1:{port}/v1", "apiKey": "sk-b"}
                        },
                    }
                    with nanobot_server(config, command=command(name)) as (nb_port, proc, _):
                        url = f"http://127.0.0.1:{nb_port}/v1/chat/completions"
                        if load == "instant":
                            rate, rate_cpu = rate_round(url, args.requests, proc.pid)
                        else:
                            model_url = f"http://127.0.0.1:{port}/v1/chat/completions"
                            ratio, ratio_cpu = ratio_round(model_url, url, args.turns, n, proc.pid)
                rows[name].append((rate, rate_cpu, ratio, ratio_cpu))
                print(
                    f" round {n + 1} {name:9}  c=16 {rate:6.0f} req/s,"
                    f" {rate_cpu:.2f} ms CPU a turn | {args.turns} streams: ratio p50"
                    f" {ratio:.2f}, {ratio_cpu:.2f} ms CPU a turn",
                    flush=True,
                )
    finally:
        for model in models:
            model.terminate()
            model.wait()
    print("medians:")
    for name in SERVERS:
        med = [statistics.median(row[i] for row in rows[name]) for i in range(4)]
        print(
            f" {name:9}  c=16 {med[0]:6.0f} req/s, {med[1]:.2f} ms CPU a turn"
            f" | streams: ratio p50 {med[2]:.2f}, {med[3]:.2f} ms CPU a turn"
        )


if __name__ == "__main__":
    main()
