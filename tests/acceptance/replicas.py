"""Several `nanobot serve` processes on one storage, and a round-robin proxy in front.

The proxy is a few lines of asyncio on 127.0.0.1: each new client connection goes to
the next replica in turn (a replica that refuses the connection is skipped, as a load
balancer's health check would), and bytes are copied both ways until either side
closes. A client that opens a connection per request thus alternates replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import attrs
from anyio.abc import Process

NANOBOT = [sys.executable, "-m", "nanobot_api.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Replica:
    """One server process: its origin, and the process (to kill)."""

    origin: str
    process: Process
    port: int

    def kill(self) -> None:
        """``kill -9``: no drain, no clean-up, whatever it was doing."""
        self.process.send_signal(signal.SIGKILL)


@asynccontextmanager
async def replica(
    home: Path, config: dict[str, object], name: str, *args: str
) -> AsyncIterator[Replica]:
    """`nanobot serve` with ``config`` and its own workspace, up and answering /health."""
    folder = home / name
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "config.json"
    path.write_text(json.dumps(config))
    port = free_port()
    log = (folder / "serve.log").open("ab")
    env = {**os.environ, "HOME": str(folder)}
    env.pop("NANOBOT_CONFIG", None)
    command = [*NANOBOT, "serve", "-c", str(path), "-w", str(folder / "ws"), "-p", str(port)]
    process = await anyio.open_process(
        [*command, *args], env=env, stdout=subprocess.DEVNULL, stderr=log
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(origin, process)
        yield Replica(origin, process, port)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(15):
                await process.wait()
        if process.returncode is None:
            process.kill()
        await process.wait()
        log.close()


async def wait_healthy(origin: str, process: Process, timeout_s: float = 30) -> None:
    async with aiohttp.ClientSession() as session:
        with anyio.fail_after(timeout_s):
            while True:  # a process coming up has nothing to wait on but its port
                assert process.returncode is None, "the server exited at start-up"
                try:
                    async with session.get(f"{origin}/health") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await anyio.sleep(0.05)


class RoundRobinProxy:
    """``async with RoundRobinProxy(ports) as proxy:`` serves at ``proxy.origin``."""

    def __init__(self, ports: Sequence[int]) -> None:
        self._ports = list(ports)
        self._next = itertools.cycle(range(len(self._ports)))
        self.connections: Counter[int] = Counter()
        self._server: asyncio.Server | None = None
        self.origin = ""

    async def __aenter__(self) -> RoundRobinProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.origin = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        # Connections still open (a client that hung up early) end with the loop.

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream = None
        for _ in self._ports:
            port = self._ports[next(self._next)]
            try:
                upstream = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue  # a dead replica: the next one takes it
            self.connections[port] += 1
            break
        if upstream is None:
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            writer.close()
