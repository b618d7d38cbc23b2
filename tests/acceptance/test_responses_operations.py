"""Background responses under issue 16's operations rules, through a real socket: an
Idempotency-Key retry gets the response as it stands now, and the turn keeps its
place under the limits on turns at once until it ends, not until its POST returns."""

from __future__ import annotations

import json
import logging

import anyio
import attrs
import httpx2
import pytest

from nanobot_api.app.config import Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.fakes import GatedAgent


async def _until_done(client: httpx2.AsyncClient, response_id: str) -> None:
    with anyio.fail_after(10):
        while True:  # another process's turn could end it: polling is what a client does
            if (await client.get(f"/v1/responses/{response_id}")).json()["status"] == "completed":
                return
            await anyio.sleep(0.05)


async def test_a_retried_background_response_is_answered_as_it_stands_now(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "nanobot_api.access")
    agent = GatedAgent(model="nanobot-echo")
    body = {"input": "slow", "background": True}
    key = {"Idempotency-Key": "bg-1"}
    async with (
        running_server(build(config, agent=agent)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        first = await client.post("/v1/responses", json=body, headers=key)
        assert first.json()["status"] in ("queued", "in_progress")
        agent.gate("slow").set()
        await _until_done(client, first.json()["id"])
        again = await client.post("/v1/responses", json=body, headers=key)
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["status"] == "completed"
        assert again.json()["output"][0]["content"][0]["text"] == "done slow"
        # The same key with another body: refused, no turn.
        other = await client.post("/v1/responses", json={**body, "input": "other"}, headers=key)
        assert other.status_code == 422
        assert other.json()["error"]["type"] == "idempotency_key_reused"
        assert len(agent.seen) == 1  # no second turn
    # The access line names the request as it came, not the GET that answered it.
    access = [r.getMessage() for r in caplog.records if r.name == "nanobot_api.access"]
    replayed = access[-2]  # the 422 came last
    assert access[-1].startswith("POST /v1/responses 422")
    assert replayed.startswith("POST /v1/responses 200")


async def test_a_background_turn_holds_its_slot_until_it_ends(config: Config) -> None:
    config = attrs.evolve(config, api=attrs.evolve(config.api, max_concurrent_turns=1))
    agent = GatedAgent(model="nanobot-echo")
    async with (
        running_server(build(config, agent=agent)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        started = await client.post("/v1/responses", json={"input": "slow", "background": True})
        assert started.status_code == 200
        refused = await client.post("/v1/responses", json={"input": "next"})
        assert refused.status_code == 429
        assert refused.json()["error"]["type"] == "rate_limit_exceeded"
        agent.gate("slow").set()
        await _until_done(client, started.json()["id"])
        agent.gate("next").set()
        assert (await client.post("/v1/responses", json={"input": "next"})).status_code == 200


async def test_a_retry_after_a_cut_background_stream_follows_the_same_turn(
    config: Config,
) -> None:
    agent = GatedAgent(model="nanobot-echo")
    body = {"input": "slow", "background": True, "stream": True}
    key = {"Idempotency-Key": "bg-stream"}
    async with (
        running_server(build(config, agent=agent)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        async with client.stream("POST", "/v1/responses", json=body, headers=key) as first:
            async for line in first.aiter_lines():
                if line == "event: response.in_progress":
                    break  # the client goes away; the turn runs on
        agent.gate("slow").set()
        async with client.stream("POST", "/v1/responses", json=body, headers=key) as again:
            assert again.headers["Idempotent-Replayed"] == "true"
            events = [
                json.loads(line.removeprefix("data: "))
                async for line in again.aiter_lines()
                if line.startswith("data: ")
            ]
        assert [e["sequence_number"] for e in events] == list(range(len(events)))
        assert events[-1]["type"] == "response.completed"
        assert events[-1]["response"]["output"][0]["content"][0]["text"] == "done slow"
        assert len(agent.seen) == 1  # the retry ran no second turn
