"""Storage backends and worker processes, side by side in one run (scale-out.md).

1. Non-streamed echo turns at concurrency 16 over 16 sessions: SQLite in the
   workspace vs PostgreSQL (a throwaway server on this machine). Target: PostgreSQL
   at least 0.6x SQLite's rate.
2. The same turns at concurrency 64 over 64 sessions, `--workers 1` vs `--workers 2`
   (SQLite): throughput and p99.

Every turn takes its session's lease and commits through it, so this measures the
whole per-turn storage path (lease, history, fenced commit, release). Figures move
with the machine's other work; read them side by side.

    .venv/bin/python bench/scale_out.py [--turns 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import nanobot_server, percentiles

from nanobot_api.testing.postgres import temporary_postgres


async def drive(port: int, *, concurrency: int, turns: int) -> tuple[float, float, float]:
    """Turns per second, p50 and p99 (ms) of ``turns`` turns, ``concurrency`` at once,
    each task on its own session."""
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(n: int, count: int) -> None:
            body = {"messages": [{"role": "user", "content": "hello there"}], "session_id": f"s{n}"}
            for _ in range(count):
                began = time.perf_counter()
                async with session.post(url, json=body) as response:
                    await response.read()
                    assert response.status == 200, response.status
                latencies.append(time.perf_counter() - began)

        await asyncio.gather(*(worker(n, 5) for n in range(concurrency)))  # warm up
        latencies.clear()
        began = time.perf_counter()
        await asyncio.gather(*(worker(n, turns // concurrency) for n in range(concurrency)))
        elapsed = time.perf_counter() - began
    p50, p99 = percentiles(latencies)
    return len(latencies) / elapsed, p50 * 1000, p99 * 1000


def measure(config: dict[str, object], concurrency: int, turns: int) -> tuple[float, float, float]:
    with nanobot_server(config) as (port, _, _):
        return asyncio.run(drive(port, concurrency=concurrency, turns=turns))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1500)
    args = parser.parse_args()
    print(f"{'case':<28} {'turns/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    with temporary_postgres() as server:
        url = server.create_database("bench")
        rows = [
            ("c=16 SQLite", {}, 16),
            ("c=16 PostgreSQL", {"storage": {"url": url}}, 16),
        ]
        results = {}
        for name, config, concurrency in rows:
            results[name] = measure(config, concurrency, args.turns)
            rate, p50, p99 = results[name]
            print(f"{name:<28} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")
        ratio = results["c=16 PostgreSQL"][0] / results["c=16 SQLite"][0]
        print(f"PostgreSQL / SQLite rate: {ratio:.2f}x (target >= 0.6x)")
    for workers in (1, 2):
        name = f"c=64 SQLite --workers {workers}"
        rate, p50, p99 = measure({"api": {"workers": workers}}, 64, args.turns * 2)
        print(f"{name:<28} {rate:>9.0f} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
