"""History survives `kill -9`: a real `nanobot serve` process, killed between and during turns."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import httpx2
import pytest

from tests.upstream import Hang, ScriptedUpstream, Text

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@asynccontextmanager
async def nanobot_serve(home: Path, upstream: ScriptedUpstream) -> AsyncIterator[Server]:
    config = {
        "agents": {"defaults": {"provider": "local", "model": "m1"}},
        "providers": {"local": {"apiBase": upstream.base_url, "apiKey": "sk-x"}},
    }
    (home / "config.json").write_text(json.dumps(config))
    port = free_port()
    argv = [sys.executable, "-m", "nanobot_api.main", "serve", "-c", str(home / "config.json")]
    argv += ["-w", str(home / "workspace"), "-p", str(port)]
    env = {**os.environ, "HOME": str(home)}
    process = await anyio.open_process(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    server = Server(process, f"http://127.0.0.1:{port}")
    try:
        await server.wait_healthy()
        yield server
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


class Server:
    def __init__(self, process: anyio.abc.Process, origin: str) -> None:
        self.process = process
        self.origin = origin

    async def wait_healthy(self) -> None:
        async with httpx2.AsyncClient() as client:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    if (await client.get(f"{self.origin}/health")).status_code == 200:
                        return
                except httpx2.TransportError:
                    await anyio.sleep(0.05)
        raise RuntimeError("nanobot serve did not start")

    async def chat(self, text: str, session: str = "s") -> str:
        async with httpx2.AsyncClient(timeout=10) as client:
            resp = await client.post(
                f"{self.origin}/v1/chat/completions",
                json={"messages": [{"role": "user", "content": text}], "session_id": session},
            )
        resp.raise_for_status()
        content: str = resp.json()["choices"][0]["message"]["content"]
        return content

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()


async def test_completed_turns_survive_kill_9_and_a_cut_turn_leaves_no_trace(
    tmp_path: Path,
) -> None:
    async with ScriptedUpstream() as up:
        async with nanobot_serve(tmp_path, up) as server:
            assert await server.chat("one") == "echo: one"
            assert await server.chat("two") == "echo: two"
            assert await server.chat("other", session="t") == "echo: other"
            await server.kill()  # between turns

        async with nanobot_serve(tmp_path, up) as server:
            assert await server.chat("three") == "echo: three"
            sent = [m["content"] for m in up.received[-1].messages]
            assert sent == ["one", "echo: one", "two", "echo: two", "three"]
            up.add(Hang())
            async with anyio.create_task_group() as tg:

                async def cut_turn() -> None:
                    with pytest.raises(httpx2.TransportError):
                        await server.chat("cut off")

                tg.start_soon(cut_turn)
                with anyio.fail_after(10):
                    arrived = await up.wait_received(len(up.received) + 1)
                assert arrived.last_user_text == "cut off"
                await server.kill()  # during a turn: the model is still answering

        up.add(Text("four!"))
        async with nanobot_serve(tmp_path, up) as server:
            assert await server.chat("four") == "four!"
    sent = [m["content"] for m in up.received[-1].messages]
    assert sent == ["one", "echo: one", "two", "echo: two", "three", "echo: three", "four"]
