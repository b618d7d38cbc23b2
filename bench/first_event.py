"""Time to first event: a streamed response against a streamed chat completion.

One `nanobot serve` (the offline echo agent) in its own process; this process sends
alternating requests over one keep-alive connection and times, for each, the first
text delta (``response.output_text.delta`` against a chat chunk with content) and the
whole stream. Both go through the same turn; the difference is what the Responses
path adds (its record, its steps, its named events).

    .venv/bin/python bench/first_event.py [--requests 300]
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

CHAT = {"messages": [{"role": "user", "content": "hello"}], "stream": True}


async def first_and_whole(
    session: aiohttp.ClientSession, url: str, body: dict[str, object], marker: bytes
) -> tuple[float, float]:
    start = time.perf_counter()
    first = 0.0
    async with session.post(url, json=body) as response:
        assert response.status == 200, response.status
        async for line in response.content:
            if not first and marker in line:
                first = time.perf_counter() - start
    return first, time.perf_counter() - start


async def measure(port: int, requests: int) -> dict[str, tuple[list[float], list[float]]]:
    base = f"http://127.0.0.1:{port}/v1"
    cases = {
        "chat completion": (f"{base}/chat/completions", CHAT, b'"content"'),
        "response (store)": (
            f"{base}/responses",
            {"input": "hello", "stream": True, "conversation": "bench-r"},
            b"response.output_text.delta",
        ),
        "response (store: false)": (
            f"{base}/responses",
            {"input": "hello", "stream": True, "store": False, "conversation": "bench-s"},
            b"response.output_text.delta",
        ),
    }
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in cases}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for _ in range(20):  # warm the connection and both code paths
            for url, body, marker in cases.values():
                await first_and_whole(session, url, body, marker)
        for _ in range(requests):
            # Interleaved, so drift on a shared machine hits every case alike.
            for name, (url, body, marker) in cases.items():
                first, whole = await first_and_whole(session, url, body, marker)
                results[name][0].append(first)
                results[name][1].append(whole)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    with nanobot_server() as (port, _, _):
        results = asyncio.run(measure(port, args.requests))
    print(f"streamed turns of the echo agent, {args.requests} each, concurrency 1 (ms)")
    print(f"{'':26} {'first p50':>10} {'first p99':>10} {'whole p50':>10} {'whole p99':>10}")
    base = percentiles(results["chat completion"][0])[0]
    for name, (firsts, wholes) in results.items():
        f50, f99 = percentiles(firsts)
        w50, w99 = percentiles(wholes)
        print(f"{name:26} {f50 * 1e3:10.3f} {f99 * 1e3:10.3f} {w50 * 1e3:10.3f} {w99 * 1e3:10.3f}")
    for name, (firsts, _) in results.items():
        if name != "chat completion":
            delta = (percentiles(firsts)[0] - base) * 1e3
            print(f"first-event overhead of {name} vs chat completion: {delta:+.3f} ms (p50)")


if __name__ == "__main__":
    main()
