"""The message tool over a working outbox and a scripted channel, called as the LLM agent
calls it (through the ToolBox, with arguments as JSON text)."""

from __future__ import annotations

import json
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.app.message_tool import MessageTool
from nanobot_api.app.outbox import Courier
from nanobot_api.app.tools import ToolBox
from nanobot_api.domain.conversation import Message, ToolCall, Usage
from nanobot_api.domain.errors import DeliveryFailed
from nanobot_api.domain.filetypes import FileKind
from nanobot_api.domain.models import ToolContext
from nanobot_api.domain.outbox import RetryPolicy
from nanobot_api.domain.sessions import SessionKey
from tests.fakes import InMemoryOutbox, ScriptedChannel

KNOWN = {"telegram", "discord", "slack", "webhook"}
NOW = 1_000_000.0


class RecordingReply:
    def __init__(self) -> None:
        self.deltas: list[str] = []

    async def send(self, delta: str) -> None:
        self.deltas.append(delta)

    def add_usage(self, usage: Usage) -> None:
        pass

    def remember(self, message: Message) -> None:
        pass


class Rig:
    def __init__(self, workspace: Path, **tool: Any) -> None:
        self.outbox = InMemoryOutbox()
        self.telegram = ScriptedChannel("telegram")
        self.courier = Courier(
            self.outbox,
            {"telegram": self.telegram},
            policy=RetryPolicy(max_attempts=3, base_s=4.0),
            random_source=lambda: 0.0,
            clock=lambda: NOW,
            secrets=("tg-secret-token",),
        )
        ids = count(1)
        self.media = FilesystemMediaStore.in_workspace(workspace)
        self.tool = MessageTool(
            self.courier, self.media, known=KNOWN, new_id=lambda: f"ev{next(ids)}", **tool
        )
        self.box = ToolBox([self.tool])
        self.reply = RecordingReply()
        self.context = ToolContext(SESSION, self.reply)

    async def call(self, **arguments: object) -> str:
        call = ToolCall("c1", "message", json.dumps(arguments))
        return (await self.box.run(call, self.context)).text


SESSION = SessionKey("api", "s1")


@pytest.fixture(name="workspace")
def _workspace(tmp_path: Path) -> Path:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    return workspace


@pytest.fixture(name="rig")
def _rig(workspace: Path) -> Rig:
    return Rig(workspace)


def test_the_spec_says_what_the_tool_is_for_and_which_channels_are_enabled(rig: Rig) -> None:
    spec = rig.tool.spec
    assert spec.name == "message"
    assert "proactive or cross-channel" in spec.description
    assert "NOT use it to answer the current user" in spec.description
    assert spec.description.endswith("Enabled channels: telegram.")
    assert spec.parameters["required"] == ["content"]


async def test_an_enabled_channel_is_stored_then_delivered(rig: Rig) -> None:
    result = await rig.call(content="Build finished", channel="telegram", chat_id="42")
    assert result == "Message delivered to telegram:42 (event ev1)."
    (sent,) = rig.telegram.sent
    assert (sent.chat_id, sent.content, sent.event_id) == ("42", "Build finished", "ev1")
    (event,) = await rig.outbox.events()
    assert (event.status, event.attempts, event.delivered_at) == ("delivered", 1, NOW)
    assert rig.reply.deltas == []
    assert rig.courier.in_flight == set()


async def test_a_numeric_chat_id_and_a_capitalised_channel_are_accepted(rig: Rig) -> None:
    result = await rig.call(content="hi", channel=" Telegram ", chat_id=123456789)
    assert "delivered to telegram:123456789" in result


async def test_the_event_is_in_the_outbox_before_the_channel_is_asked(rig: Rig) -> None:
    seen = []
    original = rig.telegram.send

    async def send_and_look(message):  # type: ignore[no-untyped-def]
        seen.extend(await rig.outbox.events())
        return await original(message)

    rig.telegram.send = send_and_look  # type: ignore[method-assign]
    await rig.call(content="x", channel="telegram", chat_id="1")
    assert [(e.id, e.status) for e in seen] == [("ev1", "pending")]


async def test_a_retryable_failure_leaves_it_pending_and_says_so(rig: Rig) -> None:
    rig.telegram.script.append(DeliveryFailed("telegram: HTTP 502", retryable=True))
    result = await rig.call(content="x", channel="telegram", chat_id="42")
    assert result == (
        "Message not delivered to telegram:42 yet (telegram: HTTP 502). It is saved in the "
        "outbox as event ev1 (pending, next attempt in 2s) and will be retried automatically."
    )
    (event,) = await rig.outbox.events()
    assert (event.status, event.next_attempt_at) == ("pending", NOW + 2.0)


async def test_a_refusal_marks_it_failed_and_says_why(rig: Rig) -> None:
    rig.telegram.script.append(
        DeliveryFailed("telegram: HTTP 400 chat not found tg-secret-token", retryable=False)
    )
    result = await rig.call(content="x", channel="telegram", chat_id="42")
    assert result == (
        "Message could not be delivered to telegram:42: telegram: HTTP 400 chat not found ***. "
        "It is kept in the outbox as event ev1, marked failed."
    )
    (event,) = await rig.outbox.events()
    assert event.status == "failed"
    assert "tg-secret-token" not in (event.last_error or "")


@pytest.mark.parametrize(
    ("channel", "why"),
    [
        ("discord", "Channel 'discord' is not enabled"),
        ("matrix", "There is no channel named 'matrix' (enabled: telegram)"),
    ],
)
async def test_a_channel_not_enabled_is_queued_not_delivered(
    rig: Rig, channel: str, why: str
) -> None:
    result = await rig.call(content="later", channel=channel, chat_id="7")
    assert result == (
        f"{why}, so nothing was delivered. The message is kept in the outbox as queued (event ev1)."
    )
    (event,) = await rig.outbox.events()
    assert (event.status, event.channel, event.content) == ("queued", channel, "later")
    assert rig.telegram.attempts == []


@pytest.mark.parametrize("arguments", [{}, {"channel": ""}, {"channel": "api"}])
async def test_no_channel_streams_the_text_to_the_current_caller(
    rig: Rig, arguments: dict[str, str]
) -> None:
    result = await rig.call(content="Here is your summary.", **arguments)
    assert rig.reply.deltas == ["Here is your summary.\n\n"]
    assert result == "Sent to the current caller as part of your reply (no channel used)."
    assert await rig.outbox.events() == ()


async def test_another_api_session_cannot_be_reached(rig: Rig) -> None:
    result = await rig.call(content="x", channel="api", chat_id="someone-else")
    assert result.startswith("Error: message failed: the api channel can only reach")
    assert rig.reply.deltas == []


async def test_a_channel_without_chat_id_is_an_error_for_the_model(rig: Rig) -> None:
    result = await rig.call(content="x", channel="telegram")
    assert result == (
        "Error: message failed: chat_id is required when channel is given ('telegram')"
    )
    assert await rig.outbox.events() == ()


async def test_missing_or_empty_content_is_an_error(rig: Rig) -> None:
    assert "'content' is a required property" in await rig.call(channel="telegram", chat_id="1")
    assert "content is empty" in await rig.call(content="  ", channel="telegram", chat_id="1")


async def test_media_uploaded_in_the_session_is_sent_by_its_name(rig: Rig) -> None:
    chart = await rig.media.save(b"\x89PNG chart", FileKind.PNG, "chart.png", SESSION)
    result = await rig.call(content="chart", channel="telegram", chat_id="1", media=["chart.png"])
    assert "delivered" in result
    (sent,) = rig.telegram.sent
    assert sent.media == (chart,)


@pytest.mark.parametrize(
    "path",
    [
        "../outside.txt",
        "/etc/passwd",
        "sessions.sqlite3",
        "sessions.sqlite3-wal",
        "../../sessions.sqlite3",
        "config.json",
        "theirs.png",
        "missing.png",
        "media",
    ],
)
async def test_media_other_than_the_sessions_uploads_is_refused(
    rig: Rig, workspace: Path, path: str
) -> None:
    """The databases, configs, other sessions' uploads and anything outside."""
    for name in ("sessions.sqlite3", "sessions.sqlite3-wal", "config.json"):
        (workspace / name).write_bytes(b"private")
    (workspace.parent / "outside.txt").write_text("secret")
    await rig.media.save(b"\x89PNG", FileKind.PNG, "theirs.png", SessionKey("api", "other"))
    result = await rig.call(content="x", channel="telegram", chat_id="1", media=[path])
    assert result.startswith("Error: message failed: media")
    assert "is not a file uploaded in this conversation; nothing was sent" in result
    assert rig.telegram.attempts == []
    assert await rig.outbox.events() == ()


async def test_oversized_media_is_refused(workspace: Path) -> None:
    rig = Rig(workspace, max_media_bytes=4)
    await rig.media.save(b"\x89PNG chart", FileKind.PNG, "chart.png", SESSION)
    result = await rig.call(content="x", channel="telegram", chat_id="1", media=["chart.png"])
    assert "is over 4 bytes; nothing was sent" in result


async def test_media_for_the_current_caller_is_refused(rig: Rig) -> None:
    await rig.media.save(b"\x89PNG chart", FileKind.PNG, "chart.png", SESSION)
    result = await rig.call(content="x", media=["chart.png"])
    assert "media can only be sent through a channel" in result
    assert rig.reply.deltas == []


async def test_a_chat_outside_allow_chat_ids_is_refused(workspace: Path) -> None:
    rig = Rig(workspace, allow_chat_ids={"telegram": ["42"], "discord": ["7"]})
    refused = await rig.call(content="hi", channel="telegram", chat_id="666")
    assert refused.startswith("Error: message failed: chat '666' is not among the chats")
    assert "nothing was sent" in refused
    assert "delivered" in await rig.call(content="hi", channel="telegram", chat_id=42)
    # A channel that is not enabled keeps its list too: nothing is queued for others.
    assert "is not among" in await rig.call(content="hi", channel="discord", chat_id="8")
    assert [e.chat_id for e in await rig.outbox.events()] == ["42"]


async def test_one_turn_makes_at_most_max_sends(workspace: Path) -> None:
    rig = Rig(workspace, max_sends=2)
    results = [await rig.call(content=f"m{i}", channel="telegram", chat_id="1") for i in range(4)]
    assert ["delivered" in r for r in results] == [True, True, False, False]
    assert results[2] == (
        "Error: message failed: this turn already made 2 sends, the most one turn may make; "
        "nothing was sent"
    )
    assert len(rig.telegram.sent) == 2
    # The next turn has its own allowance.
    rig.context = ToolContext(SESSION, rig.reply)
    assert "delivered" in await rig.call(content="next turn", channel="telegram", chat_id="1")
