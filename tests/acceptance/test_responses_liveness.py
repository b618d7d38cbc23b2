"""A background response outlives no process: when the replica running it dies
(kill -9), its followers on another replica see it end as failed (interrupted) within
``storage.leaseS``, instead of waiting for ever."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import anyio
import attrs
import pytest
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.sqlite_responses import SqliteResponseStore, responses_path
from nanobot_api.app.config import Config, StorageConfig
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.responses import ResponseError
from tests.acceptance.replicas import replica
from tests.fakes import GatedAgent
from tests.upstream import ScriptedUpstream, Text

pytestmark = pytest.mark.slow
LEASE_S = 1.0


@pytest.fixture(name="url", params=["sqlite", "postgres"])
def _url(request: pytest.FixtureRequest) -> str:
    """The storage both replicas share: the first's workspace files, or one database."""
    return "" if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


async def test_followers_of_a_response_whose_replica_was_killed_see_it_fail(
    tmp_path: Path, url: str
) -> None:
    never = asyncio.Event()
    storage: dict[str, object] = {"leaseS": LEASE_S, **({"url": url} if url else {})}
    async with ScriptedUpstream([Text("first second", gate=never)]) as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "storage": storage,
        }
        # The follower: in this process, on the killed replica's files or database.
        workspace = tmp_path / ("b" if url else "a/ws")
        follower = Config(workspace=workspace, storage=StorageConfig(url=url))
        async with (
            replica(tmp_path, config, "a") as one,
            running_server(build(follower)) as two,
            AsyncOpenAI(base_url=f"{one.origin}/v1", api_key="x", max_retries=0) as first,
            AsyncOpenAI(base_url=two.base_url, api_key="x", max_retries=0) as second,
        ):
            started = await first.responses.create(model="m1", input="hi", background=True)
            stream = await second.responses.retrieve(started.id, stream=True)
            events = []
            async for event in stream:
                events.append(event)
                if event.type == "response.output_text.delta":
                    break  # the turn is half-way through its answer
            one.kill()
            # Killed: no drain, no last write; what ends it is the lapsed lease.
            with anyio.fail_after(LEASE_S * 5 + 5):
                events += [event async for event in stream]
            assert events[-1].type == "response.failed"
            assert events[-1].response.status == "failed"
            assert events[-1].response.error is not None
            assert "interrupted" in events[-1].response.error.message
            numbers = [e.sequence_number for e in events]
            assert numbers == list(range(len(numbers)))
            polled = await second.responses.retrieve(started.id)
            assert (polled.status, polled.output_text) == ("failed", "first")


async def test_a_run_taken_for_dead_stops_and_keeps_the_store_s_word(config: Config) -> None:
    """A process that stalled past its lease (its response ended as interrupted by
    another) stops the turn and does not overwrite that end."""
    agent = GatedAgent(model="nanobot-echo")
    async with (
        running_server(build(config, agent=agent)) as server,
        AsyncOpenAI(base_url=server.base_url, api_key="x", max_retries=0) as client,
    ):
        started = await client.responses.create(input="stuck", background=True)
        await agent.started_event("stuck").wait()
        async with SqliteResponseStore(responses_path(config.workspace)) as store:
            running = await store.get(started.id)
            assert running is not None
            gone = ResponseError("server_error", "The response was interrupted")
            failed = attrs.evolve(running, status="failed", error=gone)
            assert await store.interrupt(failed, now=time.time() + 3600)
        with anyio.fail_after(5):
            await agent.ended_event("stuck").wait()
        ended = await client.responses.retrieve(started.id)
        assert (ended.status, ended.error and ended.error.message) == ("failed", gone.message)
