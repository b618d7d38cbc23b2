"""Waiting for a `nanobot serve` started by a test to answer."""

from __future__ import annotations

import anyio
import httpx2


async def wait_until_up(url: str, timeout_s: float = 20.0) -> None:
    """Returns once ``url`` answers 200; fails the test after ``timeout_s``."""
    async with httpx2.AsyncClient(timeout=2) as client:
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await anyio.sleep(0.05)
