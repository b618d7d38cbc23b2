"""Idempotency-Key replays and per-key limits across two replicas on one PostgreSQL
(operations.md: "held across workers and replicas when the storage is PostgreSQL"),
and across the two workers of `nanobot serve --workers 2` on SQLite (the default).

Two `nanobot serve` processes, each with its own workspace, share one database; or
two workers share one workspace's files. The model is a scripted stand-in that records
every request, so a second turn shows up as a second upstream request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.acceptance.replicas import Replica, replica
from tests.upstream import Hang, ScriptedUpstream, Text

pytestmark = pytest.mark.slow
BOB, ALICE, CAROL = "sk-bob-0123456789abcdef", "sk-alice-0123456789abc", "sk-carol-0123456789abc"


@contextlib.asynccontextmanager
async def two_replicas(
    tmp_path: Path, up: ScriptedUpstream, url: str, lease_s: float = 30.0
) -> AsyncIterator[tuple[Replica, Replica]]:
    keys = [
        {"name": "bob", "key": BOB},
        {"name": "alice", "key": ALICE, "rpm": 3},
        {"name": "carol", "key": CAROL, "maxConcurrent": 1},
    ]
    config = {
        "agents": {"defaults": {"model": "m1"}},
        "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
        "storage": {"url": url, "leaseS": lease_s},
        "api": {"keys": keys, "maxConcurrentTurns": 2},
    }
    async with (
        replica(tmp_path, config, "a") as a,
        replica(tmp_path, config, "b") as b,
    ):
        yield a, b


async def chat(
    replica: Replica, key: str, text: str, *, idem: str = "", stream: bool = False
) -> httpx.Response:
    body = {"messages": [{"role": "user", "content": text}], "session_id": text, "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    if idem:
        headers["Idempotency-Key"] = idem
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            f"{replica.origin}/v1/chat/completions", json=body, headers=headers
        )


def refused(answer: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error: dict[str, Any] = answer.json()["error"]
    assert error["type"] == kind
    return error


def worker_of(answer: httpx.Response) -> str:
    """The worker that answered: request ids are <worker's prefix><12-digit counter>."""
    return answer.headers["X-Request-ID"][:-12]


async def from_both_workers(
    send: Callable[[], Awaitable[httpx.Response]], answers: Iterable[httpx.Response] = ()
) -> list[httpx.Response]:
    """``answers`` and more of ``send()`` (a connection each, so the kernel picks the
    worker anew) until both workers have answered; every answer, in order."""
    answers = list(answers)
    while len({worker_of(answer) for answer in answers}) < 2:
        assert len(answers) < 100, "one worker took every connection"
        answers.append(await send())
    return answers


async def test_replays_and_limits_hold_across_two_replicas(
    tmp_path: Path, postgres_url: str
) -> None:
    async with ScriptedUpstream() as up, two_replicas(tmp_path, up, postgres_url) as (a, b):
        # Idempotency-Key: the other replica answers a repeat from the stored answer.
        first = await chat(a, BOB, "idem", idem="k1")
        again = await chat(b, BOB, "idem", idem="k1")
        assert first.status_code == again.status_code == 200, again.text
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert len(up.received) == 1
        refused(await chat(b, BOB, "another body", idem="k1"), 422, "idempotency_key_reused")

        # A repeat sent to B while the first still runs on A waits for it.
        gate = asyncio.Event()
        up.add(Text("slow answer", gate=gate))
        answers: dict[str, httpx.Response] = {}

        async def send(name: str, where: Replica) -> None:
            answers[name] = await chat(where, BOB, "wait", idem="k2", stream=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "first", a)
            await up.wait_received(2)
            tg.start_soon(send, "repeat", b)
            await anyio.sleep(0.5)
            assert "repeat" not in answers  # still waiting behind the first
            gate.set()
        assert answers["repeat"].text == answers["first"].text
        assert '"slow' in answers["repeat"].text
        assert len(up.received) == 2

        # maxConcurrent 1: a turn running on A holds carol's one slot for B too.
        gate = asyncio.Event()
        up.add(Text("held", gate=gate))
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(chat, a, CAROL, "held", stream=True))
            await up.wait_received(3)
            busy = refused(await chat(b, CAROL, "busy"), 429, "rate_limit_exceeded")
            assert "at most 1" in busy["message"]
            gate.set()
        assert (await chat(b, CAROL, "free again")).status_code == 200

        # maxConcurrentTurns 2 for the whole server: a turn on each replica fills it.
        gate = asyncio.Event()
        up.add(Text("held", gate=gate), Text("held", gate=gate))
        async with anyio.create_task_group() as tg:
            tg.start_soon(partial(chat, a, BOB, "held-a", stream=True))
            await up.wait_received(5)
            tg.start_soon(partial(chat, b, BOB, "held-b", stream=True))
            await up.wait_received(6)
            full = refused(await chat(a, BOB, "third"), 429, "rate_limit_exceeded")
            assert "the server" in full["message"]
            gate.set()
        assert len(up.received) == 6  # the refused turn never reached the model

        # rpm 3, counted across both replicas in one minute's window.
        if time.time() % 60 > 50:  # not across a window's end
            await anyio.sleep(61 - time.time() % 60)
        for where in (a, b, a):
            assert (await chat(where, ALICE, f"rpm-{where.port}")).status_code == 200
        over = await chat(b, ALICE, "rpm-over")
        refused(over, 429, "rate_limit_exceeded")
        assert 1 <= int(over.headers["Retry-After"]) <= 60


async def test_a_repeat_waits_for_a_long_first_but_not_for_a_dead_one(
    tmp_path: Path, postgres_url: str
) -> None:
    """The first's claim is renewed while it runs (every third of storage.leaseS), so a
    repeat on the other replica waits for it however long it takes, and once the first's
    replica is killed the repeat runs within about one lease; so does its turn slot."""
    lease_s = 1.0
    async with (
        ScriptedUpstream() as up,
        two_replicas(tmp_path, up, postgres_url, lease_s) as (a, b),
    ):
        gate = asyncio.Event()
        up.add(Text("slow answer", gate=gate))
        answers: dict[str, httpx.Response] = {}

        async def send(name: str, where: Replica, idem: str) -> None:
            with contextlib.suppress(httpx.HTTPError):  # a killed replica cuts it off
                answers[name] = await chat(where, BOB, idem, idem=idem, stream=True)

        async with anyio.create_task_group() as tg:
            tg.start_soon(send, "first", a, "long")
            await up.wait_received(1)
            tg.start_soon(send, "repeat", b, "long")
            await anyio.sleep(4 * lease_s)
            assert "repeat" not in answers  # still waiting: the first's claim holds
            gate.set()
        assert answers["repeat"].text == answers["first"].text
        assert len(up.received) == 1

        # Carol (maxConcurrent 1) runs a turn on A, which is killed mid-turn: its claim
        # and its turn slot, both renewed while it ran, free within about a lease.
        up.add(Hang())

        async def carol(name: str, where: Replica) -> None:
            with contextlib.suppress(httpx.HTTPError):  # a killed replica cuts it off
                answers[name] = await chat(where, CAROL, "dead", idem="dead")

        async with anyio.create_task_group() as tg:
            tg.start_soon(carol, "cut", a)
            await up.wait_received(2)
            a.kill()
        began = anyio.current_time()
        with anyio.fail_after(lease_s + 4):
            while True:  # a 429 says to retry shortly (the slot's lease is running out)
                await carol("retry", b)
                if answers["retry"].status_code != 429:
                    break
                await anyio.sleep(0.2)
        assert answers["retry"].status_code == 200, answers["retry"].text
        assert anyio.current_time() - began < lease_s + 4
        assert len(up.received) == 3  # the cut turn's, then the retry's own


async def test_replays_and_limits_hold_across_two_workers_on_sqlite(tmp_path: Path) -> None:
    """Each check goes on until both workers have answered it, so a worker that counted
    (or kept answers) on its own would show: the requests.sqlite3 they share is the
    one place either looks."""
    async with ScriptedUpstream() as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "api": {
                "keys": [
                    {"name": "bob", "key": BOB},
                    {"name": "alice", "key": ALICE, "rpm": 4},
                    {"name": "carol", "key": CAROL, "maxConcurrent": 1},
                ],
                # As many as the burst below, which is about rpm alone.
                "maxConcurrentTurns": 8,
            },
        }
        async with replica(tmp_path, config, "w", "--workers", "2") as served:
            # Idempotency-Key: whichever worker gets a repeat replays the stored answer.
            first = await chat(served, BOB, "idem", idem="k1")
            assert first.status_code == 200, first.text
            repeats = await from_both_workers(partial(chat, served, BOB, "idem", idem="k1"))
            for again in repeats:
                assert again.status_code == 200, again.text
                assert again.json() == first.json()
                assert again.headers["Idempotent-Replayed"] == "true"
            assert len(up.received) == 1

            # maxConcurrent 1: carol's turn on one worker fills her one slot on both.
            gate = asyncio.Event()
            up.add(Text("held", gate=gate))
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(chat, served, CAROL, "held", stream=True))
                await up.wait_received(2)
                for busy in await from_both_workers(partial(chat, served, CAROL, "busy")):
                    assert "at most 1" in refused(busy, 429, "rate_limit_exceeded")["message"]
                    assert int(busy.headers["Retry-After"]) >= 1
                gate.set()
            assert (await chat(served, CAROL, "free again")).status_code == 200

            # maxConcurrentTurns 8: eight turns, however the workers share them, fill the
            # server for both.
            gate = asyncio.Event()
            up.add(*[Text("held", gate=gate)] * 8)
            async with anyio.create_task_group() as tg:
                for n in range(8):
                    tg.start_soon(partial(chat, served, BOB, f"held-{n}", stream=True))
                await up.wait_received(11)
                for full in await from_both_workers(partial(chat, served, BOB, "ninth")):
                    assert "the server" in refused(full, 429, "rate_limit_exceeded")["message"]
                gate.set()
            assert len(up.received) == 11  # the refused turns never reached the model

            # rpm 4, one minute's window: a burst of 8, then more until both workers have
            # answered; 200 for the first 4 only, 429 with Retry-After for every other.
            if time.time() % 60 > 55:  # not across a window's end
                await anyio.sleep(61 - time.time() % 60)
            burst: list[httpx.Response] = []

            async def one(n: int) -> None:
                burst.append(await chat(served, ALICE, f"rpm-{n}"))

            async with anyio.create_task_group() as tg:
                for n in range(8):
                    tg.start_soon(one, n)
            answers = await from_both_workers(partial(chat, served, ALICE, "rpm-more"), burst)
    assert sorted(answer.status_code for answer in answers) == [200] * 4 + [429] * (
        len(answers) - 4
    )
    for answer in answers:
        if answer.status_code == 429:
            refused(answer, 429, "rate_limit_exceeded")
            assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert len(up.received) == 15
