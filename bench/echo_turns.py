"""Echo turns over a real socket: requests/s and p50/p99 latency.

Target: p50 under 2 ms at concurrency 1, non-streamed.
Run: .venv/bin/python bench/echo_turns.py [requests_per_case]
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _server import nanobot_server, percentiles


async def one(
    session: aiohttp.ClientSession, url: str, body: dict[str, object], stream: bool
) -> float:
    start = time.perf_counter()
    async with session.post(url, json=body) as response:
        if stream:
            async for _ in response.content:
                pass
        else:
            await response.read()
        assert response.status == 200, response.status
    return time.perf_counter() - start


async def case(port: int, *, concurrency: int, stream: bool, total: int) -> str:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        # Warm the connections and the server's code paths.
        for _ in range(20):
            await one(
                session,
                url,
                {"messages": [{"role": "user", "content": "warm"}], "stream": stream},
                stream,
            )

        async def worker(index: int) -> None:
            body = {
                "messages": [{"role": "user", "content": "hello benchmark world"}],
                "session_id": f"bench-{index}",
                "stream": stream,
            }
            for _ in range(total // concurrency):
                latencies.append(await one(session, url, body, stream))

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - start
    p50, p99 = percentiles(latencies)
    kind = "streamed" if stream else "non-streamed"
    return (
        f"{kind:13} concurrency {concurrency:2}: {len(latencies) / elapsed:7.0f} req/s, "
        f"p50 {p50 * 1000:6.2f} ms, p99 {p99 * 1000:6.2f} ms"
    )


def main(total: int = 2000) -> None:
    with nanobot_server() as (port, _, _):
        for stream in (False, True):
            for concurrency in (1, 32):
                print(asyncio.run(case(port, concurrency=concurrency, stream=stream, total=total)))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000)
