"""Three replicas on one PostgreSQL database behind a round-robin proxy (scale-out.md).

The model is a scripted stand-in on 127.0.0.1 that records each request, so a test can
read which history every turn was sent upstream with: a turn that saw stale history
(run beside another turn of its session, or before the previous one was kept) shows
up as a request missing a user message.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from nanobot_api.adapters.storage.postgres import PostgresSessionStore
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_outbox import PostgresOutbox
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent
from nanobot_api.domain.sessions import SessionKey
from tests.acceptance.replicas import Replica, RoundRobinProxy, replica
from tests.platforms import WEBHOOK_SECRET, FakePlatforms
from tests.upstream import Hang, ScriptedUpstream

pytestmark = pytest.mark.slow
LEASE_S = 2.0


def config_for(up: ScriptedUpstream, url: str, **extra: object) -> dict[str, object]:
    return {
        "agents": {"defaults": {"model": "m1"}},
        "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
        "storage": {"url": url, "leaseS": LEASE_S},
        **extra,
    }


@contextlib.asynccontextmanager
async def three(
    tmp_path: Path, config: dict[str, object]
) -> AsyncIterator[tuple[list[Replica], RoundRobinProxy]]:
    async with contextlib.AsyncExitStack() as stack:
        replicas = [
            await stack.enter_async_context(replica(tmp_path, config, f"r{n}")) for n in range(3)
        ]
        proxy = await stack.enter_async_context(RoundRobinProxy([r.port for r in replicas]))
        yield replicas, proxy


async def ask(origin: str, session: str, text: str) -> httpx.Response:
    # A connection per request: the proxy hands each to the next replica.
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            f"{origin}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": text}], "session_id": session},
        )


def user_texts(up: ScriptedUpstream, session_marker: str) -> list[list[str]]:
    """Per upstream request of a session (its texts start with the marker): the user
    messages it carried, in order."""
    seen = []
    for received in up.received:
        texts = [m["content"] for m in received.messages if m["role"] == "user"]
        if texts and str(texts[-1]).startswith(session_marker):
            seen.append([str(t) for t in texts])
    return seen


async def history(url: str, session: str) -> list[str]:
    async with PostgresDatabase(url) as db:
        turns = await PostgresSessionStore(db).history(SessionKey("api", session))
    return [t.user_text for t in turns]


async def test_one_sessions_turns_alternate_replicas_and_keep_order_and_history(
    tmp_path: Path, postgres_url: str
) -> None:
    async with (
        ScriptedUpstream() as up,
        three(tmp_path, config_for(up, postgres_url)) as (_, proxy),
    ):
        for n in range(9):
            answer = await ask(proxy.origin, "seq", f"seq-{n}")
            assert answer.status_code == 200, answer.text
        assert sorted(proxy.connections.values()) == [3, 3, 3]
    seen = user_texts(up, "seq-")
    assert seen == [[f"seq-{k}" for k in range(n + 1)] for n in range(9)]
    assert await history(postgres_url, "seq") == [f"seq-{n}" for n in range(9)]


async def test_concurrent_turns_of_one_session_run_one_at_a_time_on_full_history(
    tmp_path: Path, postgres_url: str
) -> None:
    """The issue's failure: 177 of 200 turns answered on stale history. Here every turn
    is sent while others of its session run on other replicas; each must still see all
    the turns kept before it."""
    count = 12
    async with (
        ScriptedUpstream() as up,
        three(tmp_path, config_for(up, postgres_url)) as (
            _,
            proxy,
        ),
    ):
        answers: list[int] = []

        async def one(n: int) -> None:
            answers.append((await ask(proxy.origin, "burst", f"burst-{n}")).status_code)

        async with anyio.create_task_group() as tg:
            for n in range(count):
                tg.start_soon(one, n)
    assert answers == [200] * count
    seen = user_texts(up, "burst-")
    assert sorted(len(texts) for texts in seen) == list(range(1, count + 1))
    kept = await history(postgres_url, "burst")
    assert len(kept) == count
    for texts in seen:  # each turn's history is exactly the turns kept before it
        assert texts[:-1] == kept[: len(texts) - 1]


async def test_a_replica_killed_mid_turn_keeps_nothing_of_it_and_frees_the_session(
    tmp_path: Path, postgres_url: str
) -> None:
    async with (
        ScriptedUpstream() as up,
        three(tmp_path, config_for(up, postgres_url)) as (
            replicas,
            proxy,
        ),
    ):
        assert (await ask(proxy.origin, "kill", "kill-0")).status_code == 200
        up.add(Hang())  # the next model call never answers
        async with anyio.create_task_group() as tg:

            async def cut() -> None:
                with contextlib.suppress(httpx.HTTPError):
                    await ask(replicas[0].origin, "kill", "kill-cut")

            tg.start_soon(cut)
            await up.wait_received(2)
            replicas[0].kill()
        began = anyio.current_time()
        answer = await ask(proxy.origin, "kill", "kill-1")
        waited = anyio.current_time() - began
        assert answer.status_code == 200, answer.text
        assert waited < LEASE_S + 3
    assert await history(postgres_url, "kill") == ["kill-0", "kill-1"]
    assert user_texts(up, "kill-1") == [["kill-0", "kill-1"]]


async def test_three_replicas_deliver_each_outbox_event_once(
    tmp_path: Path, postgres_url: str
) -> None:
    count = 30
    async with FakePlatforms() as fake, ScriptedUpstream() as up:
        hook = {"enabled": True, "url": fake.webhook_url, "secret": WEBHOOK_SECRET}
        config = config_for(up, postgres_url, channels={"webhook": hook})
        async with three(tmp_path, config) as (replicas, _), PostgresDatabase(postgres_url) as db:
            # Queued while all three run, so every delivery worker races for each event.
            outbox = PostgresOutbox(db)
            for n in range(count):
                message = OutboundMessage(f"ev{n:02d}", "webhook", f"chat{n % 4}", f"text {n}")
                await outbox.enqueue(OutboxEvent.pending(message, 1.0))
            with anyio.fail_after(60):
                await fake.wait_for(lambda f: len(f.messages("webhook")) >= count)
            await anyio.sleep(1.0)  # room for a duplicate to show up
            stored = await outbox.events()
        ids = [posted.event_id for posted in fake.messages("webhook")]
    assert sorted(ids) == [f"ev{n:02d}" for n in range(count)]
    # Each event's record names the one replica that delivered it.
    names = {f"{socket.gethostname()} pid {r.process.pid}" for r in replicas}
    for event in stored:
        (attempt,) = event.attempt_log
        assert (attempt.outcome, attempt.worker in names) == ("delivered", True)
