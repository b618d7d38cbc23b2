"""The outbox under load: 1,000 events drained to a local fake platform, and the API's
turn latency while a backlog drains compared with an idle server.

1. In process: the real outbox side (SqliteOutbox, courier, worker, webhook channel)
   against a local webhook receiver. 1,000 events are enqueued in a burst (each one
   durable before the next) while the worker runs: events/s, and p50/p99 from an
   event's enqueue to its arrival at the receiver.
2. `nanobot serve` as a subprocess (echo agent, the webhook enabled), sequential turns:
   once with an empty outbox, once with a backlog of pending events left in the
   workspace (as after a platform outage), drained at start-up while the turns run.
   The receiver answers after ``PLATFORM_DELAY_S``, as a real platform would, so the
   drain lasts long enough to overlap many turns.

Run: .venv/bin/python bench/outbox.py [events]
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import attrs
from aiohttp import web

from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.app.config import ChannelsConfig, WebhookConfig
from nanobot_api.app.wiring.channels import Outgoing
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent

sys.path.insert(0, str(Path(__file__).parent))
from _server import percentiles

PLATFORM_DELAY_S = 0.02
TURNS = 300


class Receiver:
    """A webhook receiver on 127.0.0.1 that notes when each event id first arrived."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.arrived: dict[str, float] = {}
        self.all_in = asyncio.Event()
        self.expected = 0
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_get("/stats", self._stats)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}/hook"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def expect(self, count: int) -> None:
        self.arrived.clear()
        self.all_in.clear()
        self.expected = count

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response({"count": len(self.arrived)})

    async def _hook(self, request: web.Request) -> web.Response:
        await request.read()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        self.arrived.setdefault(request.headers["X-Nanobot-Event-Id"], time.perf_counter())
        if len(self.arrived) >= self.expected:
            self.all_in.set()
        return web.json_response({"ok": True})


CHATS = 50  # events go to this many chats; one chat's events are sent one at a time


def event(n: int) -> OutboxEvent:
    message = OutboundMessage(f"bench{n:06d}", "webhook", f"chat{n % CHATS}", f"event {n}")
    return OutboxEvent.pending(message, time.time())


async def drain_in_process(count: int) -> None:
    """The live case (events enqueued one by one while the worker runs), then the
    backlog case (all of them pending before the worker starts)."""
    receiver = Receiver()
    await receiver.start()
    with tempfile.TemporaryDirectory() as home:
        channels = ChannelsConfig(webhook=WebhookConfig(enabled=True, url=receiver.url))
        # Live: each enqueue is durable (FULL) before the next, as the message tool does.
        receiver.expect(count)
        outgoing = Outgoing(channels, Path(home) / "live")
        await outgoing.start()
        enqueued: dict[str, float] = {}
        start = time.perf_counter()
        for n in range(count):
            item = event(n)
            await outgoing.outbox.enqueue(item)
            enqueued[item.id] = time.perf_counter()
            outgoing.worker.wake()
        enqueue_s = time.perf_counter() - start
        await asyncio.wait_for(receiver.all_in.wait(), 120)
        total_s = max(receiver.arrived.values()) - start
        await outgoing.stop()
        report("live", count, total_s, [receiver.arrived[i] - t for i, t in enqueued.items()])
        print(f"  enqueue: {enqueue_s / count * 1e3:.2f} ms per durable insert (synchronous=FULL)")
        # Backlog: everything is due when the worker starts (after an outage, a restart).
        receiver.expect(count)
        outgoing = Outgoing(channels, Path(home) / "backlog")
        for n in range(count):
            await outgoing.outbox.enqueue(event(n))
        start = time.perf_counter()
        await outgoing.start()
        await asyncio.wait_for(receiver.all_in.wait(), 120)
        total_s = max(receiver.arrived.values()) - start
        await outgoing.stop()
        report("backlog", count, total_s, [t - start for t in receiver.arrived.values()])
    await receiver.stop()


def report(label: str, count: int, total_s: float, latencies: list[float]) -> None:
    p50, p99 = percentiles(latencies)
    print(
        f"drain ({label}): {count} events to a local webhook in {total_s:.2f}s = "
        f"{count / total_s:,.0f} events/s; enqueue->delivery p50 {p50 * 1e3:.1f} ms, "
        f"p99 {p99 * 1e3:.1f} ms"
    )


# --- turn latency while draining --------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve_receiver(delay_s: float) -> None:
    """The receiver as a process of its own (``--receiver``): prints its URL, serves."""
    receiver = Receiver(delay_s)
    await receiver.start()
    print(receiver.url, flush=True)
    await asyncio.Event().wait()


async def turn_latencies(home: Path, hook_url: str, backlog: int) -> tuple[list[float], float]:
    """Sequential echo turns against a fresh server; with a backlog, only the turns that
    ran while it drained count. Returns (latencies, seconds the drain took)."""
    workspace = home / f"ws{backlog}"
    if backlog:
        async with SqliteOutbox(workspace / "outbox.sqlite3", synchronous="NORMAL") as outbox:
            for n in range(backlog):
                await outbox.enqueue(event(n))
    config = {"channels": {"webhook": {"enabled": True, "url": hook_url}}}
    (home / "config.json").write_text(json.dumps(config))
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "nanobot_api.main", "serve", "-c", str(home / "config.json")],
        *["-p", str(port), "-w", str(workspace)],
        env={**os.environ, "HOME": str(home)},
        stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    stats_url = hook_url.replace("/hook", "/stats")
    latencies: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:

            async def arrived() -> int:
                async with session.get(stats_url) as resp:
                    count: int = (await resp.json())["count"]
                    return count

            base = await arrived()
            while True:
                try:
                    async with session.get(f"{url}/health") as resp:
                        if resp.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.01)
            started = time.perf_counter()
            body = {"messages": [{"role": "user", "content": "hello"}]}
            for turn in range(TURNS):
                # Checked between timed turns, every 10th: the drain must still be going.
                if backlog and turn % 10 == 0 and await arrived() - base >= backlog:
                    break
                t0 = time.perf_counter()
                async with session.post(f"{url}/v1/chat/completions", json=body) as resp:
                    await resp.read()
                    assert resp.status == 200
                latencies.append(time.perf_counter() - t0)
            # The receiver is another process: its count is polled, there is no event.
            while backlog and await arrived() - base < backlog:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            drain_s = time.perf_counter() - started
    finally:
        process.terminate()
        await process.wait()
    return latencies, drain_s


async def turns_while_draining(backlog: int) -> None:
    # The receiver runs in a process of its own, so the client timing the turns does
    # not share an event loop (or the GIL) with 300 platform requests a second.
    receiver = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--receiver",
        str(PLATFORM_DELAY_S),
        stdout=asyncio.subprocess.PIPE,
    )
    assert receiver.stdout is not None
    hook_url = (await receiver.stdout.readline()).decode().strip()
    try:
        with tempfile.TemporaryDirectory() as home:
            idle, _ = await turn_latencies(Path(home), hook_url, 0)
            busy, drain_s = await turn_latencies(Path(home), hook_url, backlog)
    finally:
        receiver.terminate()
        await receiver.wait()
    for label, samples in (("idle", idle), (f"draining {backlog}", busy)):
        p50, p99 = percentiles(samples)
        print(
            f"turns ({label}): {len(samples)} sequential echo turns, "
            f"p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms"
        )
    rate = backlog / drain_s
    print(
        f"  the backlog drained in {drain_s:.2f}s ({rate:,.0f} events/s against a platform "
        f"answering in {PLATFORM_DELAY_S * 1e3:.0f} ms, concurrency 8)"
    )


async def main() -> None:
    if sys.argv[1:2] == ["--receiver"]:
        await serve_receiver(float(sys.argv[2]))
        return
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    await drain_in_process(count)
    await turns_while_draining(count)


if __name__ == "__main__":
    attrs.resolve_types(OutboxEvent)
    asyncio.run(main())
