"""psycopg 3 vs asyncpg on the session store's hot path, side by side in one run.

Each of C tasks owns a session and loops for a few seconds: read the session's
latest turns (the history a turn sends upstream), then append one turn in its own
transaction. Both drivers talk to the same throwaway server through a pool of C
connections; the figure is turns per second and the p99 of one read+write.

    .venv/bin/python bench/postgres_drivers.py [--seconds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
import psycopg_pool

from nanobot_api.testing.postgres import temporary_postgres

_SCHEMA = """
CREATE TABLE turns (session_key TEXT NOT NULL, turn_no INTEGER NOT NULL,
  n_messages INTEGER NOT NULL, messages TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL,
  PRIMARY KEY (session_key, turn_no))
"""
_READ = "SELECT turn_no, messages FROM turns WHERE session_key = {0} ORDER BY turn_no DESC LIMIT 20"
_WRITE = (
    "INSERT INTO turns SELECT {0}, COALESCE(MAX(turn_no), 0) + 1, 2, {1}, 0 "
    "FROM turns WHERE session_key = {0}"
)
_PAYLOAD = json.dumps(
    [{"role": "user", "content": "x" * 200}, {"role": "assistant", "content": "y" * 600}]
)

Step = Callable[[str], Awaitable[None]]


async def _drive(step: Step, concurrency: int, seconds: float) -> tuple[float, float]:
    latencies: list[float] = []
    stop = time.monotonic() + seconds

    async def worker(n: int) -> None:
        key = f"api:s{n}"
        while time.monotonic() < stop:
            began = time.perf_counter()
            await step(key)
            latencies.append(time.perf_counter() - began)

    began = time.monotonic()
    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    elapsed = time.monotonic() - began
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    return len(latencies) / elapsed, p99


async def _psycopg(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    async with psycopg_pool.AsyncConnectionPool(
        url, min_size=concurrency, max_size=concurrency, open=False
    ) as pool:
        await pool.wait()

        async def step(key: str) -> None:
            async with pool.connection() as conn:
                await (await conn.execute(_READ.format("%s"), (key,))).fetchall()
                await conn.execute(_WRITE.format("%s", "%s"), (key, _PAYLOAD, key))

        return await _drive(step, concurrency, seconds)


async def _asyncpg(url: str, concurrency: int, seconds: float) -> tuple[float, float]:
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    try:

        async def step(key: str) -> None:
            async with pool.acquire() as conn:
                await conn.fetch(_READ.format("$1"), key)
                await conn.execute(_WRITE.format("$1", "$2"), key, _PAYLOAD)

        return await _drive(step, concurrency, seconds)
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    with temporary_postgres() as server:
        print(f"c={args.concurrency}, {args.seconds:g} s each, read 20 turns + append 1")
        print(f"{'driver':<10} {'turns/s':>9} {'p99 ms':>8}")
        for name, run in (("psycopg", _psycopg), ("asyncpg", _asyncpg)):
            url = server.create_database(name)
            server.sql(_SCHEMA, name)
            rate, p99 = asyncio.run(run(url, args.concurrency, args.seconds))
            print(f"{name:<10} {rate:>9.0f} {p99:>8.2f}")


if __name__ == "__main__":
    main()
