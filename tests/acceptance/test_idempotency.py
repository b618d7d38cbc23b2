"""Idempotency-Key on the turn POSTs, through a real socket: one turn per key."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import httpx2
import pytest

from nanobot_api.app.config import (
    AgentDefaults,
    AgentsConfig,
    ApiKeyConfig,
    Config,
    ProviderConfig,
)
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.ports import Reply
from nanobot_api.domain.turns import Turn
from tests.fakes import FailingAgent, HistoryCounter
from tests.upstream import Break, Hang, ScriptedUpstream, Step, Text

ALICE, BOB = "sk-alice-0123456789abcdef", "sk-bob-0123456789abcdef"


def keyed(config: Config) -> Config:
    keys = (ApiKeyConfig(name="alice", key=ALICE), ApiKeyConfig(name="bob", key=BOB))
    return attrs.evolve(config, api=attrs.evolve(config.api, keys=keys))


@asynccontextmanager
async def serving(config: Config, agent: Any) -> AsyncIterator[httpx2.AsyncClient]:
    async with (
        running_server(build(config, agent=agent)) as server,
        httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
    ):
        yield client


def body(text: str = "hello", *, stream: bool = False) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], "session_id": "s", "stream": stream}


async def post(
    client: httpx2.AsyncClient, key: str, idem: str, payload: dict[str, Any]
) -> httpx2.Response:
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
    return await client.post("/v1/chat/completions", json=payload, headers=headers)


async def test_a_repeat_gets_the_stored_answer_and_runs_no_second_turn(config: Config) -> None:
    agent = HistoryCounter()
    async with serving(keyed(config), agent) as client:
        first = await post(client, ALICE, "k1", body())
        again = await post(client, ALICE, "k1", body())
        assert first.status_code == again.status_code == 200
        assert again.json() == first.json()  # the same id, the same text
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.headers["X-Session-Id"] == "s"
        assert again.headers["X-Request-ID"] != first.headers["X-Request-ID"]
        assert agent.turns == 1
        # Per key: bob's k1 is his own, and runs.
        assert (await post(client, BOB, "k1", body())).status_code == 200
        assert agent.turns == 2
        reused = await post(client, ALICE, "k1", body("something else"))
        assert reused.status_code == 422
        assert reused.json()["error"]["type"] == "idempotency_key_reused"


async def test_a_repeat_after_idempotency_h_runs_a_new_turn(config: Config) -> None:
    config = keyed(config)
    config = attrs.evolve(config, api=attrs.evolve(config.api, idempotency_h=0.3 / 3600))
    agent = HistoryCounter()
    async with serving(config, agent) as client:
        first = await post(client, ALICE, "ttl", body())
        await anyio.sleep(0.4)  # the record is forgotten after 0.3 s
        late = await post(client, ALICE, "ttl", body())
    assert first.status_code == late.status_code == 200
    assert "Idempotent-Replayed" not in late.headers
    assert late.json()["id"] != first.json()["id"]
    assert agent.turns == 2


async def test_a_streamed_repeat_gets_the_stored_stream(config: Config) -> None:
    agent = HistoryCounter()
    async with serving(keyed(config), agent) as client:
        first = await post(client, ALICE, "s1", body(stream=True))
        again = await post(client, ALICE, "s1", body(stream=True))
    assert again.headers["content-type"].startswith("text/event-stream")
    assert again.text == first.text
    assert again.text.endswith("data: [DONE]\n\n")
    assert agent.turns == 1


async def test_a_repeat_while_the_first_runs_waits_for_its_answer(config: Config) -> None:
    agent = HistoryCounter()
    agent.gate = anyio.Event()
    answers: list[httpx2.Response] = []

    async def send(client: httpx2.AsyncClient) -> None:
        answers.append(await post(client, ALICE, "w1", body()))

    async with serving(keyed(config), agent) as client, anyio.create_task_group() as group:
        group.start_soon(send, client)
        await agent.started.wait()
        group.start_soon(send, client)
        await anyio.sleep(0.3)  # the repeat is waiting, not running
        assert agent.turns == 1
        agent.gate.set()
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].json() == answers[1].json()
    assert agent.turns == 1


@pytest.mark.parametrize("failure", ["model_breaks_off", "client_leaves"])
async def test_a_repeat_waiting_behind_a_first_that_fails_runs_the_turn_itself(
    config: Config, failure: str
) -> None:
    """The real agent and a model of the tests' own: the first turn fails while the
    repeat waits (its answer breaks off, or its client leaves); the repeat then runs
    the one turn that is kept."""
    held = asyncio.Event()
    first: Step = Break("Sure, first", gate=held) if failure == "model_breaks_off" else Hang()
    answers: dict[str, httpx2.Response] = {}

    async def send(client: httpx2.AsyncClient, name: str, read_s: float = 30) -> None:
        headers = {"Authorization": f"Bearer {ALICE}", "Idempotency-Key": "f1"}
        try:
            answers[name] = await client.post(
                "/v1/chat/completions", json=body("plan my day"), headers=headers, timeout=read_s
            )
        except httpx2.ReadTimeout:
            assert (name, failure) == ("first", "client_leaves")

    async with ScriptedUpstream([first, Text("Here is the plan")]) as up:
        config = attrs.evolve(
            keyed(config),
            agents=AgentsConfig(AgentDefaults(model="m1")),
            providers={"custom": ProviderConfig(api_base=up.base_url, api_key="sk-up")},
        )
        async with (
            running_server(build(config)) as server,
            httpx2.AsyncClient(base_url=server.origin, timeout=30) as client,
        ):
            async with anyio.create_task_group() as group:
                group.start_soon(send, client, "first", 1.0 if failure == "client_leaves" else 30)
                await up.wait_received(1)
                group.start_soon(send, client, "repeat")
                await anyio.sleep(0.3)  # the repeat is waiting: no answer, no model call
                assert (answers, len(up.received)) == ({}, 1)
                held.set()  # the first's answer breaks off (or its client gives up at 1 s)
            after = await post(client, ALICE, "f2", body("and tomorrow?"))
    if failure == "model_breaks_off":
        assert answers["first"].status_code == 502
    assert answers["repeat"].status_code == 200
    assert "Idempotent-Replayed" not in answers["repeat"].headers
    assert answers["repeat"].json()["choices"][0]["message"]["content"] == "Here is the plan"
    assert after.status_code == 200
    # Two calls for the key (the failed one, the good one), and one turn kept: the next
    # turn's history holds the repeat's exchange once and nothing of the failed one.
    assert [r.last_user_text for r in up.received] == ["plan my day"] * 2 + ["and tomorrow?"]
    sent = [(m["role"], m["content"]) for m in up.received[2].messages if m["role"] != "system"]
    assert sent == [
        ("user", "plan my day"),
        ("assistant", "Here is the plan"),
        ("user", "and tomorrow?"),
    ]


@pytest.mark.slow
async def test_a_retry_after_a_cut_connection_makes_one_turn_and_survives_a_restart(
    config: Config,
) -> None:
    config = keyed(config)
    agent = HistoryCounter()
    agent.gate = anyio.Event()
    async with serving(config, agent) as client:
        headers = {"Authorization": f"Bearer {ALICE}", "Idempotency-Key": "cut-1"}
        async with anyio.create_task_group() as group:

            async def cut() -> None:
                # The client gives up mid-turn: the connection is closed under it.
                with pytest.raises(httpx2.ReadTimeout):
                    await client.post(
                        "/v1/chat/completions", json=body("cut"), headers=headers, timeout=0.5
                    )

            group.start_soon(cut)
        assert agent.turns == 1
        agent.gate = None  # the retry's turn runs through
        retry = await post(client, ALICE, "cut-1", body("cut"))
        assert retry.status_code == 200
        text = retry.json()["choices"][0]["message"]["content"]
        assert text.endswith("0 before")  # the cut turn left nothing behind
    # A new server on the same workspace still has the record: the key is durable.
    fresh = HistoryCounter()
    async with serving(config, fresh) as client:
        again = await post(client, ALICE, "cut-1", body("cut"))
        assert again.json() == retry.json()
        assert fresh.turns == 0
        history = await client.post(
            "/v1/chat/completions",
            json=body("after"),
            headers={"Authorization": f"Bearer {ALICE}"},
        )
        assert json.loads(history.text)["choices"][0]["message"]["content"].endswith("1 before")


class _EchoCounter(HistoryCounter):
    """Answers the user's own text, counting turns."""

    async def respond(self, turn: Turn, reply: Reply) -> None:
        self.turns += 1
        await reply.send(f"you said: {turn.text}")


# Text about SSE that looks like the framing of a failed stream.
_LOOKS_FAILED = (
    'how do I parse\nevent: error\ndata: {"error": {"message": "x"}}\n'
    "event: response.failed\nlines?"
)


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/chat/completions", body(_LOOKS_FAILED, stream=True)),
        ("/v1/responses", {"input": _LOOKS_FAILED, "stream": True}),
    ],
)
async def test_a_streamed_answer_whose_text_mentions_error_events_is_replayed(
    config: Config, path: str, payload: dict[str, Any]
) -> None:
    """Success is decided by the stream's framing, not by the words of the reply."""
    agent = _EchoCounter()
    headers = {"Authorization": f"Bearer {ALICE}", "Idempotency-Key": "sse-text"}
    async with serving(keyed(config), agent) as client:
        first = await client.post(path, json=payload, headers=headers)
        again = await client.post(path, json=payload, headers=headers)
    assert first.status_code == again.status_code == 200
    assert "event: error" in json.dumps(first.text)  # the text did reach the stream
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.text == first.text
    assert agent.turns == 1


async def test_a_stream_that_failed_is_not_replayed_and_its_retry_runs_again(
    config: Config,
) -> None:
    agent = FailingAgent(RuntimeError("model went away"))
    async with serving(keyed(config), agent) as client:
        first = await post(client, ALICE, "fails", body(stream=True))
        again = await post(client, ALICE, "fails", body(stream=True))
    assert '"error"' in first.text
    assert "Idempotent-Replayed" not in again.headers
    assert '"error"' in again.text  # it ran again (and failed again)
