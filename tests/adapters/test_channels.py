"""Each channel adapter against a fake of its platform on 127.0.0.1: what arrives (text,
splitting, files, auth, signature) and how each kind of failure comes back."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import attrs
import pytest

from nanobot_api.adapters.channels.discord import DiscordOutboundChannel, nonce
from nanobot_api.adapters.channels.plugins import BUILT_IN, plugin_factory
from nanobot_api.adapters.channels.slack import SlackOutboundChannel
from nanobot_api.adapters.channels.telegram import TelegramOutboundChannel
from nanobot_api.adapters.channels.webhook import WebhookOutboundChannel, signature
from nanobot_api.adapters.retry_after import retry_after
from nanobot_api.domain.errors import ConfigError, DeliveryFailed
from nanobot_api.domain.outbox import OutboundMessage
from nanobot_api.domain.ports import OutboundChannel
from tests.platforms import (
    DISCORD_TOKEN,
    SLACK_TOKEN,
    TELEGRAM_TOKEN,
    WEBHOOK_SECRET,
    Fail,
    FakePlatforms,
    Hang,
    Ok,
    Platform,
)
from tests.upstream import closed_port

PLATFORMS: list[Platform] = ["telegram", "discord", "slack", "webhook"]
SECRETS = (TELEGRAM_TOKEN, DISCORD_TOKEN, SLACK_TOKEN, WEBHOOK_SECRET, "hook-SECRET-in-url")
Make = Callable[[Platform], OutboundChannel]


@pytest.fixture(name="fake")
async def _fake() -> AsyncIterator[FakePlatforms]:
    async with FakePlatforms() as fake:
        yield fake


@pytest.fixture(name="make")
async def _make(fake: FakePlatforms) -> AsyncIterator[Make]:
    async with aiohttp.ClientSession() as session:

        def make(platform: Platform, *, timeout_s: float = 5.0) -> OutboundChannel:
            channels: dict[Platform, OutboundChannel] = {
                "telegram": TelegramOutboundChannel(
                    session, TELEGRAM_TOKEN, fake.telegram_base, timeout_s=timeout_s
                ),
                "discord": DiscordOutboundChannel(
                    session, DISCORD_TOKEN, fake.discord_base, timeout_s=timeout_s
                ),
                "slack": SlackOutboundChannel(
                    session, SLACK_TOKEN, fake.slack_base, timeout_s=timeout_s
                ),
                "webhook": WebhookOutboundChannel(
                    session, fake.webhook_url, WEBHOOK_SECRET, timeout_s=timeout_s
                ),
            }
            return channels[platform]

        yield make


def message(
    platform: Platform, text: str = "hello", media: tuple[str, ...] = ()
) -> OutboundMessage:
    return OutboundMessage("0123456789abcdef", platform, "C42", text, media)


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_text_arrives_with_the_platforms_auth(
    fake: FakePlatforms, make: Make, platform: Platform
) -> None:
    receipt = await make(platform).send(message(platform, "Build finished ✓"))
    (posted,) = fake.messages(platform)
    assert (posted.chat_id, posted.text) == ("C42", "Build finished ✓")
    assert receipt.channel == platform
    assert len(receipt.message_ids) == 1
    (arrival,) = fake.arrivals
    auth = arrival.headers.get("Authorization")
    expected_auth = {
        "telegram": None,  # the token is in the path
        "discord": f"Bot {DISCORD_TOKEN}",
        "slack": f"Bearer {SLACK_TOKEN}",
        "webhook": None,
    }
    assert auth == expected_auth[platform]


async def test_telegram_puts_the_token_in_the_path(fake: FakePlatforms, make: Make) -> None:
    await make("telegram").send(message("telegram"))
    assert fake.arrivals[0].path == f"/telegram/bot{TELEGRAM_TOKEN}/sendMessage"


async def test_the_webhook_signs_the_exact_body_and_names_the_event(
    fake: FakePlatforms, make: Make
) -> None:
    await make("webhook").send(message("webhook", "signed"))
    (arrival,) = fake.arrivals
    digest = hmac.new(WEBHOOK_SECRET.encode(), arrival.body, hashlib.sha256).hexdigest()
    assert arrival.headers["X-Nanobot-Signature"] == f"sha256={digest}"
    assert arrival.headers["X-Nanobot-Event-Id"] == "0123456789abcdef"
    event = json.loads(arrival.body)
    assert event == {
        "type": "message",
        "id": "0123456789abcdef",
        "channel": "webhook",
        "chat_id": "C42",
        "content": "signed",
        "media": [],
    }
    assert signature("k", b"x") == "sha256=" + hmac.new(b"k", b"x", hashlib.sha256).hexdigest()


async def test_a_webhook_without_secret_sends_no_signature(fake: FakePlatforms) -> None:
    async with aiohttp.ClientSession() as session:
        channel = WebhookOutboundChannel(session, fake.webhook_url)
        with pytest.raises(DeliveryFailed, match="HTTP 401") as info:
            await channel.send(message("webhook"))
    assert "X-Nanobot-Signature" not in fake.arrivals[0].headers
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("platform", "limit"), [("telegram", 4096), ("discord", 2000), ("slack", 40000)]
)
async def test_long_texts_are_split_to_the_platform_limit_in_order(
    fake: FakePlatforms, make: Make, platform: Platform, limit: int
) -> None:
    paragraph = "lorem ipsum dolor sit amet " * (limit // 100)
    text = "\n\n".join(f"{n}: {paragraph}" for n in range(12))
    receipt = await make(platform).send(message(platform, text))
    parts = [p.text or "" for p in fake.messages(platform)]
    assert len(parts) > 1
    assert len(receipt.message_ids) == len(parts)
    assert "".join(parts) == text
    assert all(len(part) <= limit for part in parts)
    assert all(part.endswith("\n\n") for part in parts[:-1])


async def test_the_webhook_sends_a_long_text_whole(fake: FakePlatforms, make: Make) -> None:
    text = "x" * 50_000
    await make("webhook").send(message("webhook", text))
    assert [p.text for p in fake.messages("webhook")] == [text]


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_files_arrive_with_their_name_and_bytes(
    fake: FakePlatforms, make: Make, platform: Platform, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.7 fake" + bytes(range(256)))
    await make(platform).send(message(platform, "see attached", (str(report),)))
    files = [p for p in fake.messages(platform) if p.filename is not None]
    texts = [p.text for p in fake.messages(platform) if p.text is not None]
    assert [(f.filename, f.data) for f in files] == [("report.pdf", report.read_bytes())]
    assert texts == ["see attached"]


async def test_discord_sends_each_step_with_a_stable_nonce(fake: FakePlatforms, make: Make) -> None:
    msg = message("discord", "a" * 2500)
    await make("discord").send(msg)
    nonces = [p.nonce for p in fake.messages("discord")]
    assert nonces == [nonce(msg.event_id, 0), nonce(msg.event_id, 1)]
    assert all(n is not None and len(n) <= 25 for n in nonces)
    bodies = [json.loads(a.body) for a in fake.arrivals]
    assert all(
        b["enforce_nonce"] is True and b["allowed_mentions"] == {"parse": []} for b in bodies
    )


async def test_discord_creates_no_duplicate_when_a_message_is_sent_again(
    fake: FakePlatforms, make: Make
) -> None:
    channel = make("discord")
    await channel.send(message("discord", "once"))
    await channel.send(message("discord", "once"))  # a retry after a crash
    assert len(fake.messages("discord")) == 1
    assert len(fake.arrivals) == 2


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_5xx_is_retryable(fake: FakePlatforms, make: Make, platform: Platform) -> None:
    fake.fail(platform, Fail(502))
    with pytest.raises(DeliveryFailed) as info:
        await make(platform).send(message(platform))
    assert info.value.retryable
    assert info.value.message.startswith(f"{platform}: HTTP 502")
    assert fake.messages() == []


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_429_is_retryable_after_the_platforms_wait(
    fake: FakePlatforms, make: Make, platform: Platform
) -> None:
    fake.fail(platform, Fail(429, retry_after="7"))
    with pytest.raises(DeliveryFailed) as info:
        await make(platform).send(message(platform))
    assert info.value.retryable
    assert info.value.retry_after_s == 7.0


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_other_4xx_are_permanent(fake: FakePlatforms, make: Make, platform: Platform) -> None:
    fake.fail(platform, Fail(403, description="bot was blocked by the user"))
    with pytest.raises(DeliveryFailed) as info:
        await make(platform).send(message(platform))
    assert not info.value.retryable
    assert "HTTP 403" in info.value.message


async def test_slack_ok_false_is_a_failure_even_with_http_200(
    fake: FakePlatforms, make: Make
) -> None:
    missing = OutboundMessage("e", "slack", "C_MISSING", "hi")
    with pytest.raises(DeliveryFailed, match="channel_not_found") as info:
        await make("slack").send(missing)
    assert not info.value.retryable


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_hanging_platform_times_out_retryably(
    fake: FakePlatforms, make: Make, platform: Platform
) -> None:
    fake.fail(platform, Hang())
    with pytest.raises(DeliveryFailed, match=r"timed out after 0\.2s") as info:
        await make(platform, timeout_s=0.2).send(message(platform))
    assert info.value.retryable


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_a_refused_connection_is_retryable_and_shows_no_url(platform: Platform) -> None:
    origin = f"http://127.0.0.1:{closed_port()}"
    async with aiohttp.ClientSession() as session:
        channel = {
            "telegram": TelegramOutboundChannel(session, TELEGRAM_TOKEN, origin),
            "discord": DiscordOutboundChannel(session, DISCORD_TOKEN, origin),
            "slack": SlackOutboundChannel(session, SLACK_TOKEN, origin),
            "webhook": WebhookOutboundChannel(session, f"{origin}/hook?token=hook-SECRET-in-url"),
        }[platform]
        with pytest.raises(DeliveryFailed, match="connection failed") as info:
            await channel.send(message(platform))
    assert info.value.retryable
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__
    assert "127.0.0.1" not in info.value.message


@pytest.mark.parametrize("platform", PLATFORMS)
async def test_no_secret_in_errors_or_logs_even_when_the_platform_echoes_it(
    fake: FakePlatforms, make: Make, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    # A platform knows its own secret only; a webhook receiver may quote anything.
    own = {"telegram": TELEGRAM_TOKEN, "discord": DISCORD_TOKEN, "slack": SLACK_TOKEN}
    echoed = f"bad token {own.get(platform, ' '.join(SECRETS))}"
    fake.fail(platform, Fail(400, description=echoed), Fail(500, description=echoed))
    channel = make(platform)
    texts = []
    for _ in range(2):
        with pytest.raises(DeliveryFailed) as info:
            await channel.send(message(platform))
        texts += [info.value.message, repr(info.value), str(info.value)]
    texts.append(caplog.text)
    if platform != "webhook":
        assert "bad token ***" in texts[0]  # quoted, with the secret masked
    for secret in SECRETS:
        assert all(secret not in text for text in texts), secret


async def test_a_partial_failure_reports_progress_and_a_retry_resumes(
    fake: FakePlatforms, make: Make
) -> None:
    text = "\n\n".join(["p" * 3000, "q" * 3000, "r" * 3000])
    first = message("telegram", text)
    fake.fail("telegram", Ok(), Fail(503))  # the second part fails
    channel = make("telegram")
    with pytest.raises(DeliveryFailed) as info:
        await channel.send(first)
    assert info.value.progress == 1
    assert [p.text for p in fake.messages("telegram")] == ["p" * 3000 + "\n\n"]
    receipt = await channel.send(attrs.evolve(first, progress=1))
    assert "".join(p.text or "" for p in fake.messages("telegram")) == text
    assert len(receipt.message_ids) == 2


async def test_a_file_that_vanished_is_a_permanent_failure(make: Make, tmp_path: Path) -> None:
    with pytest.raises(DeliveryFailed, match="can no longer be read") as info:
        await make("telegram").send(message("telegram", "x", (str(tmp_path / "gone.png"),)))
    assert not info.value.retryable
    assert info.value.progress == 1  # the text went out


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("7", 7.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
    ],
)
def test_retry_after_reads_seconds_and_dates(header: str | None, expected: float | None) -> None:
    now = 1445412470.0  # ten seconds before that date
    assert retry_after(header, now=now) == expected


def test_the_built_in_factories_and_unknown_plugins() -> None:
    assert sorted(BUILT_IN) == ["discord", "slack", "telegram", "webhook"]
    with pytest.raises(ConfigError, match=r"channels\.plugins\.nosuch: no installed package"):
        plugin_factory("nosuch")
