"""`nanobot serve --workers 2`: two processes on one port, on SQLite and on PostgreSQL,
keep one session's turns one at a time on full history (scale-out.md), and one scrape
of `/metrics` counts what every worker did (operations.md)."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.acceptance.replicas import replica
from tests.upstream import Hang, ScriptedUpstream

pytestmark = pytest.mark.slow


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it exited meanwhile
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_two_workers_run_one_sessions_turns_in_turn_on_full_history(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    storage: dict[str, object] = {"leaseS": 5}
    if backend == "postgres":
        storage["url"] = request.getfixturevalue("postgres_url")
    count = 10
    async with ScriptedUpstream() as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "storage": storage,
        }
        async with replica(tmp_path, config, "w", "--workers", "2") as served:
            assert len(await anyio.to_thread.run_sync(children, served.process.pid)) == 2
            answers: list[int] = []
            workers: set[str] = set()  # request ids are <worker's prefix><counter>

            async def one(n: int) -> None:
                async with httpx.AsyncClient(timeout=60) as client:  # a connection each
                    answer = await client.post(
                        f"{served.origin}/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": f"w-{n}"}],
                            "session_id": "w",
                        },
                    )
                answers.append(answer.status_code)
                workers.add(answer.headers["X-Request-ID"][:-12])

            async with anyio.create_task_group() as tg:
                for n in range(count):
                    tg.start_soon(one, n)
            while len(workers) < 2:  # both workers answered turns of the one session
                assert count < 200, "one worker took every connection"
                await one(count)
                count += 1
    assert answers == [200] * count
    seen = [[m["content"] for m in r.messages if m["role"] == "user"] for r in up.received]
    # One at a time: the k-th turn to run saw the k-1 turns kept before it.
    assert sorted(len(texts) for texts in seen) == list(range(1, count + 1))
    longest = max(seen, key=len)
    for texts in seen:
        assert texts[:-1] == longest[: len(texts) - 1]


def scraped(text: str) -> dict[str, float]:
    """Sums of a scrape's samples: chat requests answered, turns ended, turns in flight."""
    sums = {"chat": 0.0, "turns": 0.0, "in_flight": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "nanobot_http_requests_total" and "chat" in sample.labels["route"]:
                sums["chat"] += sample.value
            elif sample.name == "nanobot_turn_duration_seconds_count":
                sums["turns"] += sample.value
            elif sample.name == "nanobot_turns_in_flight":
                sums["in_flight"] += sample.value
    return sums


async def test_one_scrape_counts_every_workers_requests_even_a_dead_ones(
    tmp_path: Path,
) -> None:
    async with ScriptedUpstream() as up:
        config = {
            "agents": {"defaults": {"model": "m1"}},
            "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
            "api": {"shutdownGraceS": 1},
        }
        async with replica(tmp_path, config, "m", "--workers", "2") as served:

            async def chat(text: str) -> httpx.Response:
                async with httpx.AsyncClient(timeout=60) as client:  # a connection each
                    body = {"messages": [{"role": "user", "content": text}]}
                    return await client.post(f"{served.origin}/v1/chat/completions", json=body)

            async def scrape() -> dict[str, float]:
                async with httpx.AsyncClient(timeout=60) as client:
                    return scraped((await client.get(f"{served.origin}/metrics")).text)

            workers: set[str] = set()  # request ids are <worker's prefix><counter>
            sent = 0
            while len(workers) < 2 or sent < 4:
                answer = await chat(f"m-{sent}")
                assert answer.status_code == 200, answer.text
                workers.add(answer.headers["X-Request-ID"][:-12])
                sent += 1
                assert sent < 200, "one worker took every connection"
            first = await scrape()
            assert (first["chat"], first["turns"], first["in_flight"]) == (sent, sent, 0)

            # A turn in flight, then one worker killed: its counts stay in the sum; its
            # turns in flight leave it.
            up.add(Hang())
            cut = anyio.Event()

            async def hung() -> None:
                with contextlib.suppress(httpx.HTTPError):
                    await chat("hang")
                cut.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(hung)
                await up.wait_received(sent + 1)
                assert (await scrape())["in_flight"] == 1
                victim = (await anyio.to_thread.run_sync(children, served.process.pid))[0]
                os.kill(victim, signal.SIGKILL)
                with anyio.move_on_after(1):
                    await cut.wait()
                expected = 0 if cut.is_set() else 1  # the hung turn's worker died, or not
                with anyio.fail_after(10):
                    while True:  # the parent notices the death on its own time
                        now = await scrape()
                        if now["in_flight"] == expected:
                            break
                        await anyio.sleep(0.1)
                assert (now["chat"], now["turns"]) == (sent, sent)
                tg.cancel_scope.cancel()
