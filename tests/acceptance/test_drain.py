"""SIGTERM during 20 streams: a real `nanobot serve`, drained, loses no completed turn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import attrs
import httpx2
import pytest

from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent
from tests.acceptance.test_outbox_restart import config_for, events, serving
from tests.acceptance.test_workers import children
from tests.platforms import FakePlatforms, Hold
from tests.upstream import Hang, Received, ScriptedUpstream, Step, Text

pytestmark = pytest.mark.slow
STREAMS = 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@attrs.define
class Served:
    process: anyio.abc.Process
    origin: str
    stderr: bytes = b""


@asynccontextmanager
async def _serve(
    home: Path, upstream: ScriptedUpstream, grace_s: float, *flags: str
) -> AsyncIterator[Served]:
    config = {
        "api": {"shutdownGraceS": grace_s, "timeout": 60},
        "agents": {"defaults": {"provider": "local", "model": "m1"}},
        "providers": {"local": {"apiBase": upstream.base_url, "apiKey": "sk-x"}},
    }
    (home / "config.json").write_text(json.dumps(config))
    port = _free_port()
    argv = [sys.executable, "-m", "nanobot_api.main", "serve", "-c", str(home / "config.json")]
    argv += ["-w", str(home / "ws"), "-p", str(port), *flags]
    process = await anyio.open_process(
        argv, env={**os.environ, "HOME": str(home)}, stdout=subprocess.DEVNULL
    )
    served = Served(process, f"http://127.0.0.1:{port}")
    try:
        async with httpx2.AsyncClient() as client:
            deadline = time.monotonic() + 20
            while True:
                try:
                    if (await client.get(f"{served.origin}/health/ready")).status_code == 200:
                        break
                except httpx2.TransportError:
                    assert time.monotonic() < deadline, "nanobot serve did not start"
                    await anyio.sleep(0.05)
        yield served
    finally:
        if process.returncode is None:
            process.kill()
        assert process.stderr is not None
        served.stderr = b"".join([chunk async for chunk in process.stderr])
        await process.wait()


async def _stream(origin: str, n: int, events: dict[int, list[str]]) -> None:
    body = {"messages": [{"role": "user", "content": f"turn {n}"}], "session_id": f"s{n}"}
    body["stream"] = True
    async with (
        httpx2.AsyncClient(timeout=60) as client,
        client.stream("POST", f"{origin}/v1/chat/completions", json=body) as answer,
    ):
        assert answer.status_code == 200
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                events.setdefault(n, []).append(line.removeprefix("data: "))


async def _turns(home: Path) -> int:
    """The turns kept in the workspace, as `nanobot sessions list` counts them."""
    listed = await anyio.run_process(
        [sys.executable, "-m", "nanobot_api.main", "sessions", "list", "-w", str(home / "ws")],
        env={**os.environ, "HOME": str(home)},
    )
    lines = listed.stdout.decode().splitlines()
    return sum(int(line.split()[1]) for line in lines if " turn" in line)


async def _until(ready: Callable[[], Awaitable[bool]], timeout_s: float = 20) -> None:
    with anyio.fail_after(timeout_s):
        while True:
            if await ready():
                return
            await anyio.sleep(0.02)


def _events_at_least(events: dict[int, list[str]], count: int) -> Callable[[], Awaitable[bool]]:
    async def enough() -> bool:
        return sum(len(e) for e in events.values()) >= count

    return enough


async def test_sigterm_drains_twenty_streams_refuses_new_turns_and_exits_0(
    tmp_path: Path,
) -> None:
    gate = asyncio.Event()
    events: dict[int, list[str]] = {}
    async with (
        ScriptedUpstream([Text("first second", gate=gate)] * STREAMS) as up,
        _serve(tmp_path, up, grace_s=30) as served,
    ):
        async with anyio.create_task_group() as streams:
            for n in range(STREAMS):
                streams.start_soon(_stream, served.origin, n, events)
            # Each stream has its role and first piece: every turn is in flight.
            await _until(_events_at_least(events, 2 * STREAMS))
            served.process.send_signal(signal.SIGTERM)
            async with httpx2.AsyncClient(timeout=10) as client:

                async def unready() -> bool:
                    ready = await client.get(f"{served.origin}/health/ready")
                    return ready.status_code == 503

                await _until(unready)
                ready = await client.get(f"{served.origin}/health/ready")
                assert ready.json()["status"] == "draining"  # the reason, for the operator
                late = await client.post(
                    f"{served.origin}/v1/chat/completions",
                    json={"messages": [{"role": "user", "content": "late"}]},
                )
            assert late.status_code == 503
            assert late.json()["error"]["type"] == "server_shutdown"
            assert int(late.headers["Retry-After"]) >= 1
            gate.set()  # the model finishes every turn within the grace
        with anyio.fail_after(30):
            assert await served.process.wait() == 0
    assert all(events[n][-1] == "[DONE]" for n in range(STREAMS))
    assert b"Traceback" not in served.stderr
    assert b"CancelledError" not in served.stderr
    assert await _turns(tmp_path) == STREAMS


async def test_turns_outliving_the_grace_end_with_an_error_event_and_commit_nothing(
    tmp_path: Path,
) -> None:
    events: dict[int, list[str]] = {}
    never = asyncio.Event()
    plain: list[httpx2.Response] = []

    async def ask(origin: str) -> None:
        body = {"messages": [{"role": "user", "content": "plain"}], "session_id": "plain"}
        async with httpx2.AsyncClient(timeout=60) as client:
            plain.append(await client.post(f"{origin}/v1/chat/completions", json=body))

    def held(received: Received) -> Step:
        # A streamed answer stops after its first piece; a whole one never comes.
        return Hang() if received.last_user_text == "plain" else Text("first second", gate=never)

    async with (
        ScriptedUpstream(default=held) as up,
        _serve(tmp_path, up, grace_s=0.5) as served,
    ):
        async with anyio.create_task_group() as streams:
            for n in range(3):
                streams.start_soon(_stream, served.origin, n, events)
            streams.start_soon(ask, served.origin)  # and one turn not streamed
            await _until(_events_at_least(events, 6))
            await up.wait_received(4)
            served.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(30):
            assert await served.process.wait() == 0
    for n in range(3):
        error = json.loads(events[n][-1])["error"]
        assert error["type"] == "server_shutdown"
        assert "[DONE]" not in events[n]
    (answer,) = plain
    assert answer.status_code == 503
    assert answer.json()["error"]["type"] == "server_shutdown"
    assert int(answer.headers["Retry-After"]) >= 1
    assert b"Traceback" not in served.stderr
    assert await _turns(tmp_path) == 0


async def test_a_second_sigterm_stops_at_once(tmp_path: Path) -> None:
    events: dict[int, list[str]] = {}
    never = asyncio.Event()
    async with (
        ScriptedUpstream([Text("first second", gate=never)]) as up,
        _serve(tmp_path, up, grace_s=60) as served,
    ):
        async with anyio.create_task_group() as streams:
            streams.start_soon(_stream, served.origin, 0, events)
            await _until(_events_at_least(events, 2))
            served.process.send_signal(signal.SIGTERM)
            await anyio.sleep(0.3)
            served.process.send_signal(signal.SIGTERM)
        with anyio.fail_after(15):  # far sooner than the 60 s grace
            assert await served.process.wait() == 0
    assert json.loads(events[0][-1])["error"]["type"] == "server_shutdown"


def _to_every_process(served: Served, signum: signal.Signals) -> None:
    """What systemd's `stop` does (KillMode=control-group): the parent and each worker
    get the signal at the same moment."""
    workers = children(served.process.pid)
    assert len(workers) == 2
    for pid in [served.process.pid, *workers]:
        os.kill(pid, signum)


async def _stop_with_streams_in_flight(
    streams: anyio.abc.TaskGroup, served: Served, count: int, events: dict[int, list[str]]
) -> None:
    """Starts ``count`` streams, SIGTERMs every process once each has its first piece,
    and returns once the server says it is draining."""
    for n in range(count):
        streams.start_soon(_stream, served.origin, n, events)
    await _until(_events_at_least(events, 2 * count))
    _to_every_process(served, signal.SIGTERM)
    await _draining(served.origin)


async def _draining(origin: str) -> None:
    async with httpx2.AsyncClient(timeout=10) as client:

        async def both_503() -> bool:
            ready = await client.get(f"{origin}/health/ready")
            live = await client.get(f"{origin}/health/live")
            return (ready.status_code, live.status_code) == (503, 503)

        await _until(both_503)


async def test_sigterm_to_every_process_drains_two_workers_streams(tmp_path: Path) -> None:
    gate = asyncio.Event()
    events: dict[int, list[str]] = {}
    async with (
        ScriptedUpstream([Text("first second", gate=gate)] * 4) as up,
        _serve(tmp_path, up, 30, "--workers", "2") as served,
    ):
        async with anyio.create_task_group() as streams:
            await _stop_with_streams_in_flight(streams, served, 4, events)
            await anyio.sleep(0.3)  # the copies have all arrived, and cut nothing
            assert all(len(events[n]) == 2 for n in range(4))
            gate.set()
        with anyio.fail_after(30):
            assert await served.process.wait() == 0
    assert all(events[n][-1] == "[DONE]" for n in range(4))
    assert b"Traceback" not in served.stderr
    assert b"exited with" not in served.stderr
    assert await _turns(tmp_path) == 4


async def test_under_workers_the_operators_second_signal_stops_at_once(tmp_path: Path) -> None:
    events: dict[int, list[str]] = {}
    never = asyncio.Event()
    async with (
        ScriptedUpstream([Text("first second", gate=never)] * 2) as up,
        _serve(tmp_path, up, 60, "--workers", "2") as served,
    ):
        async with anyio.create_task_group() as streams:
            await _stop_with_streams_in_flight(streams, served, 2, events)
            served.process.send_signal(signal.SIGINT)  # Ctrl-C reaches the parent only
        with anyio.fail_after(15):  # far sooner than the 60 s grace
            assert await served.process.wait() == 0
    for n in range(2):
        assert json.loads(events[n][-1])["error"]["type"] == "server_shutdown"
    assert b"Traceback" not in served.stderr
    assert b"exited with" not in served.stderr


@pytest.mark.parametrize("flags", [(), ("--workers", "2")], ids=["one", "workers"])
async def test_a_second_signal_right_after_a_quick_drain_still_exits_0(
    tmp_path: Path, flags: tuple[str, ...]
) -> None:
    async with ScriptedUpstream([]) as up, _serve(tmp_path, up, 30, *flags) as served:
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(ProcessLookupError):  # it may be gone already
                served.process.send_signal(signum)
            await anyio.sleep(0.05)
        with anyio.fail_after(15):
            assert await served.process.wait() == 0
    assert b"Traceback" not in served.stderr
    assert b"exited with" not in served.stderr


async def test_sigterm_lets_the_outbox_finish_the_delivery_under_way(tmp_path: Path) -> None:
    message = OutboundMessage("ev1", "webhook", "ops", "deploy finished")
    async with SqliteOutbox(tmp_path / "ws" / "outbox.sqlite3") as outbox:
        await outbox.enqueue(OutboxEvent.pending(message, time.time()))  # due at start-up
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        fake.fail("webhook", Hold())
        async with serving(tmp_path, config_for(up, fake)) as (server, _):
            await fake.wait_for(lambda f: len(f.arrivals) == 1)  # the delivery is under way
            server.send_signal(signal.SIGTERM)
            await anyio.sleep(0.5)
            assert server.returncode is None  # waiting for the platform's answer
            fake.release()
            with anyio.fail_after(15):
                assert await server.wait() == 0
        received = fake.messages("webhook")
    (event,) = await events(tmp_path)
    assert (event.id, event.status, event.attempts) == ("ev1", "delivered", 1)
    assert [(p.event_id, p.text) for p in received] == [("ev1", "deploy finished")]
    logged = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in logged
    assert "CancelledError" not in logged
