"""Channel factories by name: the four built in, and third-party ones from entry points.

A factory takes the channel's settings (strings, ``${ENV}`` already expanded) and the
server's shared ``aiohttp.ClientSession``, and returns an ``OutboundChannel``. A package
adds a channel by declaring, in its ``pyproject.toml``::

    [project.entry-points."nanobot_api.channels"]
    matrix = "nanobot_matrix:make_channel"

where ``make_channel(settings: Mapping[str, str], session: aiohttp.ClientSession)``
returns an object with a ``name`` and ``async send(OutboundMessage) -> DeliveryReceipt``
that raises ``DeliveryFailed`` (see ``nanobot_api.domain.ports.OutboundChannel``). The
entry point is loaded only when ``channels.plugins.<name>.enabled`` is true, so an
installed but unused plugin costs nothing at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TypeAlias

import aiohttp

from nanobot_api.adapters.channels.discord import DiscordOutboundChannel
from nanobot_api.adapters.channels.slack import SlackOutboundChannel
from nanobot_api.adapters.channels.telegram import TelegramOutboundChannel
from nanobot_api.adapters.channels.webhook import WebhookOutboundChannel
from nanobot_api.domain.errors import ConfigError
from nanobot_api.domain.ports import OutboundChannel

ENTRY_POINT_GROUP = "nanobot_api.channels"

ChannelFactory: TypeAlias = Callable[[Mapping[str, str], aiohttp.ClientSession], OutboundChannel]


def _timeout(settings: Mapping[str, str]) -> float:
    return float(settings.get("timeout_s", "30"))


def _token_channel(
    cls: type[TelegramOutboundChannel | DiscordOutboundChannel | SlackOutboundChannel],
) -> ChannelFactory:
    """The factory of a bot-token platform. Settings: ``token``, ``api_base``, ``timeout_s``."""

    def make(settings: Mapping[str, str], session: aiohttp.ClientSession) -> OutboundChannel:
        return cls(session, settings["token"], settings["api_base"], timeout_s=_timeout(settings))

    return make


def webhook(settings: Mapping[str, str], session: aiohttp.ClientSession) -> OutboundChannel:
    """Settings: ``url``, ``secret``, ``timeout_s``."""
    return WebhookOutboundChannel(
        session, settings["url"], settings.get("secret", ""), timeout_s=_timeout(settings)
    )


BUILT_IN: Mapping[str, ChannelFactory] = {
    "telegram": _token_channel(TelegramOutboundChannel),
    "discord": _token_channel(DiscordOutboundChannel),
    "slack": _token_channel(SlackOutboundChannel),
    "webhook": webhook,
}


def plugin_factory(name: str) -> ChannelFactory:
    """The factory an installed package registers as ``name`` in the entry-point group.

    Raises ConfigError (naming ``channels.plugins.<name>``) when no package provides it,
    or its entry point does not load or is not callable.
    """
    param = f"channels.plugins.{name}"
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ConfigError(
            f"{param}: no installed package provides a channel named {name!r} "
            f"(entry-point group {ENTRY_POINT_GROUP})",
            param=param,
        )
    try:
        factory = found[0].load()
    except Exception as exc:  # any import-time failure of a third-party package
        raise ConfigError(
            f"{param}: entry point {found[0].value} failed to load ({type(exc).__name__})",
            param=param,
        ) from exc
    if not callable(factory):
        raise ConfigError(f"{param}: entry point {found[0].value} is not callable", param=param)
    checked: ChannelFactory = factory
    return checked
