"""From configuration to channels: which are enabled, what counts as a secret, and a
third-party channel found through a real entry point (a dist-info on sys.path)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import attrs
import pytest

from nanobot_api.app.config import (
    ChannelsConfig,
    Config,
    PluginChannelConfig,
    TelegramConfig,
    WebhookConfig,
)
from nanobot_api.app.tools import ToolBox
from nanobot_api.app.wiring.channels import Outgoing, channel_plans, channel_secrets, outgoing_for
from nanobot_api.domain.conversation import ToolCall
from nanobot_api.domain.errors import ConfigError
from nanobot_api.domain.models import ToolContext
from nanobot_api.domain.sessions import SessionKey
from tests.app.test_message_tool import RecordingReply

PLUGIN = """
from __future__ import annotations

from nanobot_api.domain.outbox import DeliveryReceipt

SENT = []


class Recorder:
    name = "recorder"

    def __init__(self, settings, session):
        self.settings = dict(settings)
        self.session = session

    async def send(self, message):
        SENT.append((self.settings, message))
        return DeliveryReceipt(self.name, message.chat_id, ("r1",))


def make_channel(settings, session):
    return Recorder(settings, session)
"""


@pytest.fixture(name="plugin_path")
def _plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed package declaring ``recorder`` in the ``nanobot_api.channels`` group."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "nanobot_recorder.py").write_text(PLUGIN)
    info = site / "nanobot_recorder-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: nanobot-recorder\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [nanobot_api.channels]
            recorder = nanobot_recorder:make_channel
            broken = nanobot_recorder:missing_name
            """
        )
    )
    monkeypatch.syspath_prepend(str(site))
    return site


def test_only_enabled_channels_are_planned() -> None:
    config = ChannelsConfig(
        telegram=TelegramConfig(enabled=True, token="t" * 20),
        webhook=WebhookConfig(enabled=False, url="https://example.com/h"),
    )
    assert [p.name for p in channel_plans(config)] == ["telegram"]
    assert channel_plans(ChannelsConfig()) == ()


def test_a_plugin_named_like_a_built_in_channel_is_refused() -> None:
    config = ChannelsConfig(plugins={"slack": PluginChannelConfig(enabled=True)})
    with pytest.raises(ConfigError, match=r"^channels\.plugins\.slack: 'slack' is a built-in"):
        channel_plans(config)


def test_an_enabled_plugin_nobody_provides_is_refused() -> None:
    config = ChannelsConfig(plugins={"matrix": PluginChannelConfig(enabled=True)})
    with pytest.raises(ConfigError, match="no installed package provides a channel named"):
        channel_plans(config)


@pytest.mark.usefixtures("plugin_path")
def test_a_plugin_entry_point_that_does_not_load_is_refused() -> None:
    config = ChannelsConfig(plugins={"broken": PluginChannelConfig(enabled=True)})
    with pytest.raises(ConfigError, match=r"entry point nanobot_recorder:missing_name failed"):
        channel_plans(config)


def test_secrets_are_tokens_urls_and_long_plugin_settings() -> None:
    config = ChannelsConfig(
        telegram=TelegramConfig(token="tg-token-value"),
        webhook=WebhookConfig(url="https://h.example/x?k=1", secret="shh-secret"),
        plugins={"p": PluginChannelConfig(settings={"key": "plugin-credential", "n": "3"})},
    )
    assert set(channel_secrets(config)) == {
        "tg-token-value",
        "https://h.example/x?k=1",
        "shh-secret",
        "plugin-credential",
    }


def test_the_outbound_side_exists_only_when_needed(tmp_path: Path) -> None:
    config = attrs.evolve(Config(), workspace=tmp_path)
    assert outgoing_for(config, with_tool=False) is None
    assert outgoing_for(config, with_tool=True) is not None
    enabled = attrs.evolve(
        config, channels=ChannelsConfig(telegram=TelegramConfig(enabled=True, token="t"))
    )
    assert outgoing_for(enabled, with_tool=False) is not None


@pytest.mark.usefixtures("plugin_path")
async def test_a_plugin_channel_delivers_what_the_tool_sends(tmp_path: Path) -> None:
    import nanobot_recorder  # type: ignore[import-not-found]  # written by the fixture

    config = ChannelsConfig(
        plugins={"recorder": PluginChannelConfig(enabled=True, settings={"room": "#ops"})}
    )
    outgoing = Outgoing(config, tmp_path / "ws")
    await outgoing.start()
    try:
        assert outgoing.enabled == ("recorder",)
        context = ToolContext(SessionKey("api", "s"), RecordingReply())
        arguments = json.dumps({"content": "hi", "channel": "recorder", "chat_id": "c1"})
        result = await ToolBox([outgoing.tool]).run(ToolCall("1", "message", arguments), context)
    finally:
        await outgoing.stop()
    assert result.text.startswith("Message delivered to recorder:c1")
    ((settings, message),) = nanobot_recorder.SENT
    assert settings["room"] == "#ops"
    assert (message.channel, message.chat_id, message.content) == ("recorder", "c1", "hi")


async def test_start_and_stop_without_channels_keep_the_outbox_usable(tmp_path: Path) -> None:
    outgoing = Outgoing(ChannelsConfig(), tmp_path / "ws")
    await outgoing.start()
    context = ToolContext(SessionKey("api", "s"), RecordingReply())
    arguments = json.dumps({"content": "later", "channel": "telegram", "chat_id": "1"})
    result = await ToolBox([outgoing.tool]).run(ToolCall("1", "message", arguments), context)
    await outgoing.stop()
    assert "Channel 'telegram' is not enabled" in result.text
    assert (tmp_path / "ws" / "outbox.sqlite3").exists()
