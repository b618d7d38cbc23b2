"""Keys as tenants, rate limits and failed-key throttling, through a real socket."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx2
import openai
import pytest
from openai import AsyncOpenAI

from nanobot_api.app.config import ApiKeyConfig, Config
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from tests.fakes import HistoryCounter

ALICE, BOB, OWNER = "sk-alice-0123456789abcdef", "sk-bob-0123456789abcdef", "sk-owner-0123456789abc"


def keyed(config: Config, alice_rpm: int = 0, alice_turns: int = 0, **api: Any) -> Config:
    keys = (
        ApiKeyConfig(name="alice", key=ALICE, rpm=alice_rpm, max_concurrent=alice_turns),
        ApiKeyConfig(name="bob", key=BOB),
    )
    return attrs.evolve(config, api=attrs.evolve(config.api, api_key=OWNER, keys=keys, **api))


@asynccontextmanager
async def serving(config: Config, agent: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with (
        running_server(build(config, agent=agent)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        yield client


async def chat(
    client: httpx2.AsyncClient, key: str, text: str = "hi", session: str = "s", **headers: str
) -> httpx2.Response:
    body = {"messages": [{"role": "user", "content": text}], "session_id": session}
    headers = {"Authorization": f"Bearer {key}", **headers}
    return await client.post("/v1/chat/completions", json=body, headers=headers)


def reply_of(answer: httpx2.Response) -> str:
    assert answer.status_code == 200, answer.text
    return str(answer.json()["choices"][0]["message"]["content"])


def refused(answer: httpx2.Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert (error["type"], error["code"]) == (kind, status)
    return error


async def test_two_keys_never_see_each_others_sessions_on_any_endpoint(
    config: Config, storage_url: str
) -> None:
    """On both storage backends (operations.md)."""
    agent = HistoryCounter()
    config = attrs.evolve(config, storage=attrs.evolve(config.storage, url=storage_url))
    async with serving(keyed(config), agent) as client:
        assert reply_of(await chat(client, ALICE)) == "0 before"
        assert reply_of(await chat(client, ALICE)) == "1 before"
        # The same session id under another key (or the unnamed one) is another session.
        assert reply_of(await chat(client, BOB)) == "0 before"
        assert reply_of(await chat(client, OWNER)) == "0 before"
        refused(await chat(client, "sk-wrong-0123456789abcdef"), 401, "authentication_error")

        base = str(client.base_url) + "/v1"
        async with (
            AsyncOpenAI(base_url=base, api_key=ALICE, max_retries=0) as alice,
            AsyncOpenAI(base_url=base, api_key=BOB, max_retries=0) as bob,
        ):
            mine = await alice.responses.create(input="private", conversation="s")
            assert mine.output_text == "2 before"  # alice's session "s", continued
            await alice.responses.create(input="hers", conversation="alice-only")
            for attempt in (
                bob.responses.retrieve(mine.id),
                bob.responses.delete(mine.id),
                bob.responses.input_items.list(mine.id),
                bob.conversations.retrieve("alice-only"),
            ):
                with pytest.raises(openai.NotFoundError):
                    await attempt
            theirs = await bob.responses.create(input="again", conversation="s")
            assert theirs.output_text == "1 before"  # bob's own "s"
            with pytest.raises(openai.NotFoundError):
                await bob.responses.create(input="x", previous_response_id=mine.id)
            listed = await client.get(
                "/v1/conversations", headers={"Authorization": f"Bearer {BOB}"}
            )
            assert listed.status_code == 200
            assert "private" not in listed.text
            assert "alice-only" not in listed.text
            assert (await alice.responses.retrieve(mine.id)).output_text == "2 before"


async def test_the_other_key_gets_404_on_cancel_items_update_and_delete_of_a_conversation(
    config: Config, storage_url: str
) -> None:
    """The endpoints the test above leaves out, on a conversation made with
    POST /v1/conversations and one made by a response; the owner's data stays."""
    config = attrs.evolve(config, storage=attrs.evolve(config.storage, url=storage_url))
    async with serving(keyed(config), HistoryCounter()) as client:
        base = str(client.base_url) + "/v1"
        async with (
            AsyncOpenAI(base_url=base, api_key=ALICE, max_retries=0) as alice,
            AsyncOpenAI(base_url=base, api_key=BOB, max_retries=0) as bob,
        ):
            made = await alice.conversations.create(metadata={"topic": "hers"})
            mine = await alice.responses.create(input="private", conversation=made.id)
            await alice.responses.create(input="hers", conversation="alice-only")
            before = {
                c: [i.model_dump() async for i in alice.conversations.items.list(c)]
                for c in (made.id, "alice-only")
            }
            assert before[made.id]
            assert before["alice-only"]
            for conversation in (made.id, "alice-only"):
                for attempt in (
                    bob.conversations.items.list(conversation),
                    bob.conversations.update(conversation, metadata={"topic": "his"}),
                    bob.conversations.delete(conversation),
                ):
                    with pytest.raises(openai.NotFoundError):
                        await attempt
            with pytest.raises(openai.NotFoundError):
                await bob.responses.cancel(mine.id)
            with pytest.raises(openai.BadRequestError):  # the owner is told why not
                await alice.responses.cancel(mine.id)
            listed = await client.get(
                "/v1/conversations", headers={"Authorization": f"Bearer {BOB}"}
            )
            assert listed.status_code == 200
            assert made.id not in listed.text
            assert (await alice.conversations.retrieve(made.id)).metadata == {"topic": "hers"}
            for conversation, items in before.items():
                after = [i.model_dump() async for i in alice.conversations.items.list(conversation)]
                assert after == items
            kept = await alice.responses.retrieve(mine.id)
            assert (kept.status, kept.output_text) == (mine.status, mine.output_text)


async def test_a_key_over_its_requests_per_minute_gets_429_with_retry_after(
    config: Config,
) -> None:
    async with serving(keyed(config, alice_rpm=2), HistoryCounter()) as client:
        for _ in range(2):
            reply_of(await chat(client, ALICE))
        over = await chat(client, ALICE)
        refused(over, 429, "rate_limit_exceeded")
        assert 1 <= int(over.headers["Retry-After"]) <= 60
        reply_of(await chat(client, BOB))  # another key's budget is its own


async def test_a_burst_over_a_keys_rpm_gets_429_for_exactly_the_excess(
    config: Config, storage_url: str
) -> None:
    config = attrs.evolve(config, storage=attrs.evolve(config.storage, url=storage_url))
    agent = HistoryCounter()
    answers: list[httpx2.Response] = []

    async def one(client: httpx2.AsyncClient, n: int) -> None:
        answers.append(await chat(client, ALICE, session=f"burst-{n}"))

    async with serving(keyed(config, alice_rpm=5), agent) as client:
        if time.time() % 60 > 55:  # the burst must not straddle a minute's window
            await anyio.sleep(61 - time.time() % 60)
        async with anyio.create_task_group() as group:
            for n in range(12):
                group.start_soon(one, client, n)
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * 5 + [429] * 7
    for answer in answers:
        if answer.status_code == 429:
            refused(answer, 429, "rate_limit_exceeded")
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert agent.turns == 5


async def test_turns_at_once_per_key_and_for_the_server(config: Config) -> None:
    agent = HistoryCounter()
    agent.gate = anyio.Event()
    async with serving(keyed(config, alice_turns=1, max_concurrent_turns=2), agent) as client:
        async with anyio.create_task_group() as running:
            running.start_soon(chat, client, ALICE, "slow", "a1")
            await agent.started.wait()
            busy = await chat(client, ALICE, "second", "a2")
            refused(busy, 429, "rate_limit_exceeded")
            assert int(busy.headers["Retry-After"]) >= 1
            agent.started = anyio.Event()
            running.start_soon(chat, client, BOB, "slow", "b1")
            await agent.started.wait()
            full = await chat(client, BOB, "third", "b2")
            assert "the server" in refused(full, 429, "rate_limit_exceeded")["message"]
            agent.gate.set()
        reply_of(await chat(client, ALICE, "later", "a3"))


async def test_an_address_sending_wrong_keys_is_throttled_before_keys_are_compared(
    config: Config, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with serving(keyed(config), HistoryCounter()) as client:
        for n in range(10):  # api.authFailuresPerMin's default
            # A forged X-Forwarded-For from a peer that is not a trusted proxy is ignored.
            forged = {"X-Forwarded-For": f"10.9.9.{n}"}
            refused(
                await chat(client, "sk-guess-0123456789abcd", **forged), 401, "authentication_error"
            )
        throttled = await chat(client, ALICE)  # even the right key, from that address
        refused(throttled, 429, "rate_limit_exceeded")
        assert int(throttled.headers["Retry-After"]) >= 1
        health = await client.get("/health/ready")
        assert health.status_code == 200  # the public routes stay open
    # Every request was logged (an access line each), and no key, right or wrong.
    access = [r for r in caplog.records if r.name == "nanobot_api.access"]
    assert len(access) == 12
    for key in (ALICE, OWNER, "sk-guess-0123456789abcd"):
        assert key not in caplog.text


async def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(
    config: Config,
) -> None:
    config = keyed(config, auth_failures_per_min=2, trusted_proxies=("127.0.0.1",))
    async with serving(config, HistoryCounter()) as client:
        mallory = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(2):
            refused(
                await chat(client, "sk-guess-0123456789abcd", **mallory),
                401,
                "authentication_error",
            )
        refused(await chat(client, ALICE, **mallory), 429, "rate_limit_exceeded")
        reply_of(await chat(client, ALICE, **{"X-Forwarded-For": "203.0.113.8"}))
