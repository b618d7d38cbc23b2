"""`nanobot serve` killed with SIGKILL while an event is pending, then started again; and
`nanobot outbox list|show|retry|drop` as a user runs them, beside a live server."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import anyio
import openai
import pytest
from anyio.abc import Process
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.domain.outbox import (
    OutboundMessage,
    OutboxEvent,
    RetryPolicy,
    claimed,
    delivered,
    failed_attempt,
)
from tests.platforms import (
    DISCORD_TOKEN,
    TELEGRAM_TOKEN,
    WEBHOOK_SECRET,
    Fail,
    FakePlatforms,
    Hang,
)
from tests.upstream import Calls, ScriptedUpstream, Text

NANOBOT = [sys.executable, "-m", "nanobot_api.main"]
MODEL = "MiniMax-M2.7"


def environment(home: Path) -> dict[str, str]:
    env = {**os.environ, "HOME": str(home)}
    env.pop("NANOBOT_CONFIG", None)
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(tmp_path: Path, config: dict[str, object]) -> AsyncIterator[tuple[Process, str]]:
    """`nanobot serve` in a subprocess, up and answering /health; killed at the end."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    port = free_port()
    log = (tmp_path / "serve.log").open("ab")
    command = [*NANOBOT, "serve", "-c", str(path), "-w", str(tmp_path / "ws"), "-p", str(port)]
    process = await anyio.open_process(
        command, env=environment(tmp_path), stdout=subprocess.DEVNULL, stderr=log
    )
    origin = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            with anyio.fail_after(20):
                while True:  # a process coming up has nothing to wait on but its port
                    try:
                        async with session.get(f"{origin}/health") as resp:
                            if resp.status == 200:
                                break
                    except aiohttp.ClientConnectionError:
                        pass
                    await anyio.sleep(0.05)
        yield process, origin
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        log.close()


def config_for(up: ScriptedUpstream, fake: FakePlatforms, **outbox: object) -> dict[str, object]:
    return {
        "agents": {"defaults": {"model": MODEL}},
        "providers": {"custom": {"apiBase": up.base_url, "apiKey": "sk-up"}},
        "channels": {
            "webhook": {"enabled": True, "url": fake.webhook_url, "secret": WEBHOOK_SECRET},
            "discord": {"enabled": True, "token": DISCORD_TOKEN, "apiBase": fake.discord_base},
            "outbox": outbox,
        },
        # A killed server's claims on events it was sending run out this soon.
        "storage": {"leaseS": 1},
    }


async def events(tmp_path: Path) -> tuple[OutboxEvent, ...]:
    async with SqliteOutbox(tmp_path / "ws" / "outbox.sqlite3") as outbox:
        return await outbox.events()


async def settled(tmp_path: Path) -> OutboxEvent:
    with anyio.fail_after(15):
        while True:  # another process writes the file: nothing to wait on but the file
            (event,) = await events(tmp_path)
            if event.status != "pending":
                return event
            await anyio.sleep(0.05)


def message_call(channel: str, text: str) -> Calls:
    return Calls((("message", json.dumps({"content": text, "channel": channel, "chat_id": "7"})),))


@pytest.mark.slow
async def test_a_pending_retry_survives_kill_9_and_is_delivered_once(tmp_path: Path) -> None:
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        fake.fail("webhook", Fail(500))
        up.add(message_call("webhook", "after the crash"), Text("queued it"))
        config = config_for(up, fake, retryBaseS=2.0)
        async with serving(tmp_path, config) as (server, origin):
            async with AsyncOpenAI(base_url=f"{origin}/v1", api_key="x", max_retries=0) as client:
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "tell ops"}]
                )
            server.send_signal(signal.SIGKILL)  # before its retry falls due (1-2 s)
        (before,) = await events(tmp_path)
        assert (before.status, before.attempts) == ("pending", 1)
        assert before.last_error == "webhook: HTTP 500"
        async with serving(tmp_path, config):
            event = await settled(tmp_path)
        received = [p for p in fake.messages("webhook") if p.text == "after the crash"]
    assert (event.status, event.attempts) == ("delivered", 2)
    assert len(received) == 1
    assert received[0].event_id == event.id


@pytest.mark.slow
async def test_kill_9_between_sent_and_marked_sent_is_deduplicated_by_discord(
    tmp_path: Path,
) -> None:
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        # Discord creates the message but the answer never comes back: then kill -9.
        fake.fail("discord", Hang(after_create=True))
        up.add(message_call("discord", "exactly once"), Text("sent"))
        config = config_for(up, fake)

        async def ask(origin: str) -> None:
            async with AsyncOpenAI(base_url=f"{origin}/v1", api_key="x", max_retries=0) as c:
                with pytest.raises(openai.APIConnectionError):
                    await c.chat.completions.create(
                        model=MODEL, messages=[{"role": "user", "content": "post it"}]
                    )

        async with serving(tmp_path, config) as (server, origin), anyio.create_task_group() as tg:
            tg.start_soon(ask, origin)
            await fake.wait_for(lambda f: len(f.messages("discord")) == 1)
            server.send_signal(signal.SIGKILL)
        (before,) = await events(tmp_path)
        assert (before.status, before.attempts) == ("pending", 1)
        async with serving(tmp_path, config) as (restarted, _):
            event = await settled(tmp_path)
        arrivals = [a for a in fake.arrivals if a.platform == "discord"]
    assert (event.status, event.attempts) == ("delivered", 2)
    assert len(arrivals) == 2  # sent twice...
    assert [p.text for p in fake.messages("discord")] == ["exactly once"]  # ...created once
    # On record: the killed process's attempt, never finished, then the new one's.
    host = socket.gethostname()
    assert [(a.number, a.worker, a.outcome) for a in event.attempt_log] == [
        (1, f"{host} pid {server.pid}", "interrupted"),
        (2, f"{host} pid {restarted.pid}", "delivered"),
    ]


# --- the outbox CLI ------------------------------------------------------------------


async def nanobot(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = await anyio.run_process(
        [*NANOBOT, *args, "-w", str(tmp_path / "ws")], env=environment(tmp_path), check=False
    )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


async def at_once(tmp_path: Path, *commands: tuple[str, ...]) -> list[tuple[int, str, str]]:
    """Runs the ``nanobot`` commands side by side; their results in the same order."""
    results: list[tuple[int, str, str]] = [(0, "", "")] * len(commands)

    async def run(n: int) -> None:
        results[n] = await nanobot(tmp_path, *commands[n])

    async with anyio.create_task_group() as group:
        for n in range(len(commands)):
            group.start_soon(run, n)
    return results


async def seed(tmp_path: Path) -> None:
    def event(n: int, channel: str, text: str) -> OutboxEvent:
        return OutboxEvent.pending(OutboundMessage(f"ev{n}", channel, "42", text), 1.7e9 + n)

    policy = RetryPolicy(max_attempts=1)
    async with SqliteOutbox(tmp_path / "ws" / "outbox.sqlite3") as outbox:
        queued = event(1, "discord", "queued \x1b[2Jone").message
        await outbox.enqueue(OutboxEvent.queued(queued, 1.7e9))
        failed = failed_attempt(
            claimed(event(2, "telegram", "refused\nline two"), 1.7e9),
            "telegram: HTTP 403 bot was blocked",
            retryable=False,
            now=1.7e9,
            policy=policy,
            random=lambda: 0.0,
        )
        await outbox.enqueue(failed)
        await outbox.enqueue(
            delivered(claimed(event(3, "webhook", "done"), 1.7e9 + 4), now=1.7e9 + 5)
        )


async def test_outbox_list_shows_every_event_and_filters_by_status(tmp_path: Path) -> None:
    await seed(tmp_path)
    code, out, err = await nanobot(tmp_path, "outbox", "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert [line.split()[:3] for line in lines] == [
        ["ev1", "queued", "discord:42"],
        ["ev2", "failed", "telegram:42"],
        ["ev3", "delivered", "webhook:42"],
    ]
    assert lines[1].endswith("'refused line two'  last error: telegram: HTTP 403 bot was blocked")
    assert lines[0].endswith("last error: channel 'discord' is not enabled")
    assert "'queued \\x1b[2Jone'" in lines[0]  # an escape sequence is shown, not acted on
    assert "\x1b" not in out
    code, out, _ = await nanobot(tmp_path, "outbox", "list", "--status", "failed")
    assert [line.split()[0] for line in out.splitlines()] == ["ev2"]
    code, out, _ = await nanobot(tmp_path, "outbox", "list", "--status", "pending")
    assert (code, out) == (0, "No pending events in the outbox.\n")


async def test_outbox_retry_and_drop(tmp_path: Path) -> None:
    await seed(tmp_path)
    code, out, _ = await nanobot(tmp_path, "outbox", "retry", "ev2")
    assert code == 0
    assert out.startswith("Event ev2 to telegram:42 is pending again")
    code, out, _ = await nanobot(tmp_path, "outbox", "drop", "ev1")
    assert (code, out) == (0, "Dropped event ev1 to discord:42 (queued).\n")
    remaining = {e.id: (e.status, e.attempts) for e in await events(tmp_path)}
    assert remaining == {"ev2": ("pending", 1), "ev3": ("delivered", 1)}
    # The attempt made before stays on record: counted, and its error kept.
    code, out, _ = await nanobot(tmp_path, "outbox", "list", "--status", "pending")
    assert "attempts=1" in out
    assert out.rstrip().endswith("last error: telegram: HTTP 403 bot was blocked")


async def test_retrying_a_delivered_event_needs_force(tmp_path: Path) -> None:
    await seed(tmp_path)
    before = {e.id: e for e in await events(tmp_path)}
    code, out, err = await nanobot(tmp_path, "outbox", "retry", "ev3")
    assert (code, out) == (2, "")
    assert err == (
        "nanobot: Event ev3 was already delivered; retry it with --force to send it again\n"
    )
    assert {e.id: e for e in await events(tmp_path)} == before
    code, out, _ = await nanobot(tmp_path, "outbox", "retry", "--force", "ev3")
    assert code == 0
    assert out.startswith("Event ev3 to webhook:42 is pending again")
    again = {e.id: e for e in await events(tmp_path)}["ev3"]
    assert (again.status, again.progress, again.delivered_at) == (
        "pending",
        0,
        before["ev3"].delivered_at,
    )
    assert (again.attempts, again.retried_from) == (1, 1)  # its first delivery still counted


async def test_a_workspace_from_before_the_record_of_attempts_is_read_in_place(
    tmp_path: Path,
) -> None:
    await seed(tmp_path)
    path = tmp_path / "ws" / "outbox.sqlite3"
    with sqlite3.connect(path) as conn:  # back to schema 2, as an older nanobot-api left it
        conn.execute("ALTER TABLE outbox DROP COLUMN attempt_log")
        conn.execute("PRAGMA user_version=2")
    conn.close()
    code, out, err = await nanobot(tmp_path, "outbox", "show", "ev2")
    assert (code, err) == (0, "")
    assert out.splitlines()[1:] == ["  attempt 1: not on record (an event keeps its last 20)"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (3,)
    conn.close()


@pytest.mark.parametrize("action", ["retry", "drop"])
async def test_an_unknown_id_is_one_line_and_exit_2(tmp_path: Path, action: str) -> None:
    await seed(tmp_path)
    code, out, err = await nanobot(tmp_path, "outbox", action, "nope")
    assert (code, out) == (2, "")
    assert err == "nanobot: No outbox event with id 'nope'\n"


@pytest.mark.slow
async def test_every_attempt_is_on_record_through_a_forced_resend(tmp_path: Path) -> None:
    """A channel fails twice and then takes the message; `outbox show` lists the three
    attempts, a retry needs --force, and the forced resend adds a fourth after them."""
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        detail = f"bad gateway {TELEGRAM_TOKEN} \x1b[2J"  # a secret and an escape sequence
        fake.fail("telegram", Fail(502, description=detail), Fail(502, description=detail))
        up.add(message_call("telegram", "deploy done"), Text("queued it"))
        config = {
            **config_for(up, fake, retryBaseS=0.2),
            "channels": {
                "telegram": {
                    "enabled": True,
                    "token": TELEGRAM_TOKEN,
                    "apiBase": fake.telegram_base,
                },
                "outbox": {"retryBaseS": 0.2},
            },
        }
        async with serving(tmp_path, config) as (server, origin):
            async with AsyncOpenAI(base_url=f"{origin}/v1", api_key="x", max_retries=0) as client:
                await client.chat.completions.create(
                    model=MODEL, messages=[{"role": "user", "content": "tell the chat"}]
                )
            event = await settled(tmp_path)
            assert (event.status, event.attempts) == ("delivered", 3)
            # Read-only, so at once: each command is a Python start-up of its own.
            show, listed, refused = await at_once(
                tmp_path,
                ("outbox", "show", event.id),
                ("outbox", "list", "--attempts"),
                ("outbox", "retry", event.id),
            )
            code, shown, err = show
            assert (code, err) == (0, "")
            head, *attempts = shown.splitlines()
            assert head.split()[:3] == [event.id, "delivered", "telegram:7"]
            by = f"{socket.gethostname()} pid {server.pid}"
            when = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"
            failed = re.escape(f"  {by}  failed after ") + r"\d+\.\d\ds: "
            error = re.escape("telegram: HTTP 502 bad gateway *** \\x1b[2J")
            expected = [
                rf"  attempt 1  {when}{failed}{error}",
                rf"  attempt 2  {when}{failed}{error}",
                rf"  attempt 3  {when}  {re.escape(by)}  delivered after \d+\.\d\ds",
            ]
            assert len(attempts) == 3
            for line, pattern in zip(attempts, expected, strict=True):
                assert re.fullmatch(pattern, line), line
            assert TELEGRAM_TOKEN not in shown
            assert "\x1b" not in shown
            # `list --attempts` adds the same record below each event's line.
            assert listed[1].splitlines() == [head, *attempts]
            assert refused == (
                2,
                "",
                f"nanobot: Event {event.id} was already delivered; "
                "retry it with --force to send it again\n",
            )
            forced = await nanobot(tmp_path, "outbox", "retry", "--force", event.id)
            assert forced[0] == 0
            # The running server's worker finds it due on its next look at the outbox.
            await fake.wait_for(lambda f: len(f.messages("telegram")) == 2)
            again = await settled(tmp_path)
            assert (again.status, again.attempts) == ("delivered", 4)
            code, shown, _ = await nanobot(tmp_path, "outbox", "show", event.id)
        assert code == 0
        _, *now_attempts = shown.splitlines()
        assert now_attempts[:3] == attempts  # the earlier records, unchanged
        assert re.fullmatch(
            rf"  attempt 4  {when}  {re.escape(by)}  delivered after \d+\.\d\ds", now_attempts[3]
        ), now_attempts[3]
        assert [p.text for p in fake.messages("telegram")] == ["deploy done", "deploy done"]
