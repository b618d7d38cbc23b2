"""SIGTERM with background responses running: a real `nanobot serve` gives them
``api.shutdownGraceS`` (not Quart's 5 s for background tasks): one that finishes in
the grace completes, one that outlives it ends failed and its follower gets
``response.failed``; exit 0, no traceback."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import anyio
import attrs
import httpx2
import pytest

from nanobot_api.adapters.storage.sqlite_responses import SqliteResponseStore, responses_path
from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.acceptance.replicas import replica
from tests.fakes import GatedAgent
from tests.upstream import ScriptedUpstream, Text

pytestmark = pytest.mark.slow
GRACE_S = 7.0
QUART_BACKGROUND_S = 5.0  # Quart's BACKGROUND_TASK_SHUTDOWN_TIMEOUT


async def _follow(origin: str, response_id: str, seen: dict[str, list[dict[str, object]]]) -> None:
    async with (
        httpx2.AsyncClient(timeout=60) as client,
        client.stream("GET", f"{origin}/v1/responses/{response_id}?stream=true") as answer,
    ):
        async for line in answer.aiter_lines():
            if line.startswith("data: "):
                seen.setdefault(response_id, []).append(json.loads(line.removeprefix("data: ")))


async def test_background_responses_drain_within_the_grace(tmp_path: Path) -> None:
    in_time, never = asyncio.Event(), asyncio.Event()
    script = [Text("in time", gate=in_time), Text("never", gate=never)]
    async with ScriptedUpstream(script) as up:
        config = {
            "api": {"shutdownGraceS": GRACE_S},
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
        }
        seen: dict[str, list[dict[str, object]]] = {}
        async with replica(tmp_path, config, "a") as served:
            async with httpx2.AsyncClient(base_url=served.origin, timeout=30) as client:
                ids = []
                for text in ("finishes", "outlives"):
                    answer = await client.post(
                        "/v1/responses", json={"input": text, "background": True}
                    )
                    ids.append(answer.json()["id"])
                    await up.wait_received(len(ids))
            async with anyio.create_task_group() as followers:
                for response_id in ids:
                    followers.start_soon(_follow, served.origin, response_id, seen)
                await anyio.sleep(0.5)
                served.process.send_signal(signal.SIGTERM)
                await anyio.sleep(QUART_BACKGROUND_S + 0.5)
                in_time.set()  # past Quart's 5 s, within the grace
            with anyio.fail_after(GRACE_S + 10):
                assert await served.process.wait() == 0
    finishes, outlives = (seen[i][-1] for i in ids)
    assert finishes["type"] == "response.completed"
    assert outlives["type"] == "response.failed"
    assert outlives["response"]["status"] == "failed"  # type: ignore[index]
    log = (tmp_path / "a" / "serve.log").read_text()
    assert "Traceback" not in log
    assert "CancelledError" not in log


async def test_served_without_the_drain_quart_waits_the_grace_for_them(config: Config) -> None:
    """Any ASGI server's own shutdown: Quart cancels a background response after
    ``api.shutdownGraceS`` (here less than its own 5 s), and it ends failed."""
    config = attrs.evolve(config, api=attrs.evolve(config.api, shutdown_grace_s=0.5))
    agent = GatedAgent(model="nanobot-echo")
    async with running_server(build(config, agent=agent)) as server:
        async with httpx2.AsyncClient(base_url=server.origin) as client:
            answer = await client.post("/v1/responses", json={"input": "slow", "background": True})
        await agent.started_event("slow").wait()
        stopping = time.monotonic()
    assert time.monotonic() - stopping < QUART_BACKGROUND_S - 1
    async with SqliteResponseStore(responses_path(config.workspace)) as store:
        ended = await store.get(answer.json()["id"])
    assert ended is not None
    assert ended.status == "failed"
