"""The whole chain on real sockets: the openai SDK -> nanobot -> a scripted model that
calls ``message`` -> fake platforms; then what the caller saw, what each platform
received and what the outbox holds."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from openai import AsyncOpenAI

from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.app.config import (
    AgentDefaults,
    AgentsConfig,
    ChannelsConfig,
    Config,
    DiscordConfig,
    OutboxConfig,
    ProviderConfig,
    SlackConfig,
    TelegramConfig,
    WebhookConfig,
)
from nanobot_api.app.wiring.bootstrap import build
from nanobot_api.app.wiring.live_server import running_server
from nanobot_api.domain.outbox import OutboxEvent
from tests.platforms import (
    DISCORD_TOKEN,
    SLACK_TOKEN,
    TELEGRAM_TOKEN,
    WEBHOOK_SECRET,
    Fail,
    FakePlatforms,
    Hang,
)
from tests.upstream import Calls, ScriptedUpstream, Text, closed_port

MODEL = "MiniMax-M2.7"
UPSTREAM_KEY = "sk-upstream-SECRET"


def configured(workspace: Path, up: ScriptedUpstream, fake: FakePlatforms, **outbox: Any) -> Config:
    """Telegram and the webhook enabled (pointed at the fakes); Discord and Slack not."""
    channels = ChannelsConfig(
        telegram=TelegramConfig(enabled=True, token=TELEGRAM_TOKEN, api_base=fake.telegram_base),
        discord=DiscordConfig(enabled=False, token=DISCORD_TOKEN, api_base=fake.discord_base),
        slack=SlackConfig(enabled=False, token=SLACK_TOKEN, api_base=fake.slack_base),
        webhook=WebhookConfig(enabled=True, url=fake.webhook_url, secret=WEBHOOK_SECRET),
        outbox=OutboxConfig(**{"retry_base_s": 0.05, "retry_max_s": 0.1, **outbox}),
    )
    return attrs.evolve(
        Config(),
        agents=AgentsConfig(AgentDefaults(model=MODEL)),
        providers={"custom": ProviderConfig(api_base=up.base_url, api_key=UPSTREAM_KEY)},
        channels=channels,
        workspace=workspace,
    )


def call(**arguments: object) -> tuple[str, str]:
    return ("message", json.dumps(arguments))


@asynccontextmanager
async def stack(
    tmp_path: Path, **outbox: Any
) -> AsyncIterator[tuple[ScriptedUpstream, FakePlatforms, AsyncOpenAI, Config]]:
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        config = configured(tmp_path / "workspace", up, fake, **outbox)
        async with (
            running_server(build(config)) as server,
            AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0) as client,
        ):
            yield up, fake, client, config


async def outbox_events(config: Config) -> tuple[OutboxEvent, ...]:
    # A second connection, as `nanobot outbox list` would open while the server runs.
    async with SqliteOutbox(config.workspace / "outbox.sqlite3") as outbox:
        return await outbox.events()


async def settled(config: Config, status: str = "delivered") -> tuple[OutboxEvent, ...]:
    """The outbox once every event has ``status``. The platform's answer arrives before
    the server writes it down, and the file has no notification to wait on: poll it."""
    with anyio.fail_after(10):
        while True:
            events = await outbox_events(config)
            if events and all(e.status == status for e in events):
                return events
            await anyio.sleep(0.02)


def tool_results(up: ScriptedUpstream) -> list[str]:
    return [m["content"] for m in up.received[-1].messages if m["role"] == "tool"]


THREE_SENDS = Calls(
    (
        call(content="Build finished ✓", channel="telegram", chat_id="42"),
        call(content="Deploying now", channel="discord", chat_id="9001"),
        call(content="Here is the summary you asked for."),
    )
)


async def test_enabled_disabled_and_no_channel_in_one_turn(tmp_path: Path) -> None:
    async with stack(tmp_path) as (up, fake, client, config):
        up.add(THREE_SENDS, Text("All three done."))
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "notify everyone"}]
        )
        # The caller sees the no-channel text in the reply, then the model's answer.
        assert reply.choices[0].message.content == (
            "Here is the summary you asked for.\n\nAll three done."
        )
        # The model was offered the tool and read each outcome.
        (tool,) = up.received[0].tools
        assert tool["function"]["name"] == "message"
        delivered, queued, to_caller = tool_results(up)
        assert delivered.startswith("Message delivered to telegram:42 (event ")
        assert queued.startswith("Channel 'discord' is not enabled, so nothing was delivered.")
        assert to_caller == "Sent to the current caller as part of your reply (no channel used)."
        # Only the enabled platform received anything.
        assert [(p.chat_id, p.text) for p in fake.messages()] == [("42", "Build finished ✓")]
        assert {a.platform for a in fake.arrivals} == {"telegram"}
        events = await outbox_events(config)
    assert [(e.channel, e.chat_id, e.status, e.content) for e in events] == [
        ("telegram", "42", "delivered", "Build finished ✓"),
        ("discord", "9001", "queued", "Deploying now"),
    ]


async def test_the_callers_part_streams_before_the_answer(tmp_path: Path) -> None:
    async with stack(tmp_path) as (up, _, client, _):
        up.add(Calls((call(content="First this."),)), Text("Then that."))
        stream = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "go"}], stream=True
        )
        pieces = [
            chunk.choices[0].delta.content
            async for chunk in stream
            if chunk.choices and chunk.choices[0].delta.content
        ]
    # The caller's part goes out whole before the answer; the answer's pieces that reach
    # the server together go on together (one write per upstream read).
    assert pieces[0] == "First this.\n\n"
    assert "".join(pieces[1:]) == "Then that."


async def test_webhook_delivery_with_a_file_uploaded_in_the_session(tmp_path: Path) -> None:
    async with stack(tmp_path) as (up, fake, client, _):
        up.add(
            Calls(
                (
                    call(
                        content="Report attached",
                        channel="webhook",
                        chat_id="ops",
                        media=["report.txt"],
                    ),
                )
            ),
            Text("Sent."),
        )
        data = base64.b64encode(b"quarterly numbers").decode()
        file_part = {"file_data": f"data:text/plain;base64,{data}", "filename": "report.txt"}
        await client.chat.completions.create(
            model=MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "send the report"},
                        {"type": "file", "file": file_part},  # type: ignore[typeddict-item]
                    ],
                }
            ],
        )
        sent_file, text_part = fake.messages("webhook")
    assert (sent_file.filename, sent_file.data) == ("report.txt", b"quarterly numbers")
    assert (text_part.chat_id, text_part.text) == ("ops", "Report attached")
    assert sent_file.event_id == text_part.event_id


async def test_a_platform_500_is_retried_in_the_background(tmp_path: Path) -> None:
    async with stack(tmp_path) as (up, fake, client, config):
        fake.fail("telegram", Fail(500))
        up.add(Calls((call(content="retry me", channel="telegram", chat_id="42"),)), Text("ok"))
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
        (result,) = tool_results(up)
        assert result.startswith("Message not delivered to telegram:42 yet (telegram: HTTP 500")
        assert "will be retried automatically" in result
        await fake.wait_for(lambda f: len(f.messages("telegram")) == 1)
        (event,) = await settled(config)
    assert (event.status, event.attempts, event.last_error) == (
        "delivered",
        2,
        "telegram: HTTP 500 scripted failure",
    )


async def test_a_429_waits_for_retry_after(tmp_path: Path) -> None:
    async with stack(tmp_path) as (up, fake, client, config):
        fake.fail("telegram", Fail(429, retry_after="1"))
        up.add(Calls((call(content="slow down", channel="telegram", chat_id="42"),)), Text("ok"))
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
        (result,) = tool_results(up)
        assert "(pending, next attempt in 1s)" in result
        await fake.wait_for(lambda f: len(f.messages("telegram")) == 1, within_s=5)
        (event,) = await settled(config)
    assert event.status == "delivered"
    assert event.delivered_at is not None
    assert event.delivered_at - event.created_at >= 1.0


async def test_a_hanging_platform_times_out_and_is_retried(tmp_path: Path) -> None:
    async with stack(tmp_path, timeout_s=0.3) as (up, fake, client, config):
        fake.fail("telegram", Hang())
        up.add(Calls((call(content="are you there", channel="telegram", chat_id="42"),)), Text(""))
        reply = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}]
        )
        assert reply.choices[0].message.content  # the turn ended, with the fallback text
        (result,) = tool_results(up)
        assert "telegram: timed out after 0.3s" in result
        await fake.wait_for(lambda f: len(f.messages("telegram")) == 1)
        (event,) = await settled(config)
    assert (event.status, event.attempts) == ("delivered", 2)


async def test_no_secret_reaches_the_caller_the_model_the_outbox_or_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secrets = (TELEGRAM_TOKEN, WEBHOOK_SECRET, "hook-SECRET-in-url", UPSTREAM_KEY, DISCORD_TOKEN)
    async with ScriptedUpstream() as up, FakePlatforms() as fake:
        config = configured(tmp_path / "ws", up, fake)
        # Discord enabled but unreachable: its connection error must not show the token.
        unreachable = f"http://127.0.0.1:{closed_port()}/bot{DISCORD_TOKEN}"
        channels = attrs.evolve(
            config.channels,
            discord=DiscordConfig(enabled=True, token=DISCORD_TOKEN, api_base=unreachable),
        )
        config = attrs.evolve(config, channels=channels)
        fake.fail("telegram", Fail(400, description=f"Unauthorized: bad token {TELEGRAM_TOKEN}"))
        fake.fail("webhook", Fail(500, description=f"{WEBHOOK_SECRET} hook-SECRET-in-url"))
        up.add(
            Calls(
                (
                    call(content="a", channel="telegram", chat_id="1"),
                    call(content="b", channel="webhook", chat_id="2"),
                    call(content="c", channel="discord", chat_id="3"),
                )
            ),
            Text("done"),
        )
        async with (
            running_server(build(config)) as server,
            AsyncOpenAI(base_url=server.base_url, api_key="dummy", max_retries=0) as client,
        ):
            raw = await client.chat.completions.with_raw_response.create(
                model=MODEL, messages=[{"role": "user", "content": "x"}]
            )
            answer = raw.http_response.text
            results = tool_results(up)
            events = await outbox_events(config)
    assert "bad token ***" in results[0]  # the platform's words, masked
    shown = [answer, *results, caplog.text, *(repr(e) for e in events)]
    for secret in secrets:
        assert all(secret not in text for text in shown), secret
