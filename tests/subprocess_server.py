"""Waiting for a `nanobot serve` started by a test to answer; one turn through one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import anyio
import attrs
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


@attrs.frozen
class Served:
    """What one turn through a `nanobot serve` left: the answer, its stderr, its exit code."""

    answer: httpx2.Response
    stderr: str
    exit_code: int


async def one_turn(
    home: Path,
    config: Mapping[str, object],
    body: Mapping[str, object],
    *,
    request_id: str,
    flags: tuple[str, ...] = (),
    env: Mapping[str, str] | None = None,
) -> Served:
    """Starts `nanobot serve` on ``config`` (workspace ``home/ws``), sends ``body`` to the
    chat endpoint with ``X-Request-ID: request_id``, then stops it with SIGTERM."""
    (home / "config.json").write_text(json.dumps(config))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    argv = [sys.executable, "-m", "nanobot_api.main", "serve", "-p", str(port), *flags]
    argv += ["-c", str(home / "config.json"), "-w", str(home / "ws")]
    environ = {**os.environ, "HOME": str(home), **(env or {})}
    environ.pop("NANOBOT_CONFIG", None)
    process = await anyio.open_process(argv, env=environ, stdout=subprocess.DEVNULL)
    try:
        await wait_until_up(f"http://127.0.0.1:{port}/health")
        async with httpx2.AsyncClient(timeout=30) as client:
            answer = await client.post(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                json=dict(body),
                headers={"X-Request-ID": request_id},
            )
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        logged = b"".join([chunk async for chunk in process.stderr]).decode()
        code = await process.wait()
    return Served(answer, logged, code)
