"""The outbound side of a server: the channels configured, the outbox in the workspace,
the worker that drains it and the ``message`` tool, started and stopped with the app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import aiohttp
import attrs
from quart import Quart

from nanobot_api.adapters.channels.plugins import BUILT_IN, ChannelFactory, plugin_factory
from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.storage.sqlite_outbox import SqliteOutbox
from nanobot_api.app.config import ChannelsConfig, Config
from nanobot_api.app.message_tool import DEFAULT_MAX_SENDS_PER_TURN, MessageTool
from nanobot_api.app.outbox import Courier, OutboxWorker
from nanobot_api.app.telemetry import NO_TELEMETRY
from nanobot_api.app.wiring.lifecycle import Opener, add_opener
from nanobot_api.app.wiring.storage import OUTBOX_FILE, OutboxStore, UploadStore
from nanobot_api.domain.errors import ConfigError
from nanobot_api.domain.outbox import RetryPolicy
from nanobot_api.domain.ports import OutboundChannel, Telemetry
from nanobot_api.domain.redaction import Redactor

log = logging.getLogger(__name__)

# A plugin setting this short is not a credential, and redacting it (a "1", a "true")
# would garble every error message that happens to contain it.
_MIN_SECRET_CHARS = 8


def outbox_path(workspace: Path) -> Path:
    """Where the outbox keeps its events: beside the sessions, in the workspace."""
    return workspace / OUTBOX_FILE


@attrs.frozen
class ChannelPlan:
    """An enabled channel, to be made once the HTTP client session exists."""

    name: str
    factory: ChannelFactory
    settings: Mapping[str, str] = attrs.field(repr=False)  # holds the credentials


def channel_plans(config: ChannelsConfig) -> tuple[ChannelPlan, ...]:
    """Every enabled channel, built-in ones first. Raises ConfigError for a plugin named
    like a built-in channel or one that no installed package provides."""
    timeout = str(config.outbox.timeout_s)
    plans: list[ChannelPlan] = []
    for name, section in config.token_channels:
        if section.enabled:
            settings = {"token": section.token, "api_base": section.api_base, "timeout_s": timeout}
            plans.append(ChannelPlan(name, BUILT_IN[name], settings))
    hook = config.webhook
    if hook.enabled:
        settings = {"url": hook.url, "secret": hook.secret, "timeout_s": timeout}
        plans.append(ChannelPlan("webhook", BUILT_IN["webhook"], settings))
    for name, plugin in sorted(config.plugins.items()):
        if name in BUILT_IN:
            raise ConfigError(
                f"channels.plugins.{name}: {name!r} is a built-in channel; configure it "
                f"under channels.{name}",
                param=f"channels.plugins.{name}",
            )
        if plugin.enabled:
            plans.append(ChannelPlan(name, plugin_factory(name), dict(plugin.settings)))
    return tuple(plans)


def channel_secrets(config: ChannelsConfig) -> tuple[str, ...]:
    """Every configured value that must never be shown: tokens, the webhook's URL and
    secret, and any plugin setting long enough to be a credential."""
    values = [section.token for _, section in config.token_channels]
    values += [config.webhook.url, config.webhook.secret]
    for plugin in config.plugins.values():
        values += [v for v in plugin.settings.values() if len(v) >= _MIN_SECRET_CHARS]
    return tuple(v for v in values if v)


def retry_policy(config: ChannelsConfig) -> RetryPolicy:
    outbox = config.outbox
    return RetryPolicy(outbox.max_attempts, outbox.retry_base_s, outbox.retry_max_s)


class Outgoing:
    """Channels, outbox, worker and tool for one server.

    Built synchronously (nothing opened); :meth:`start` opens the outbox file and the
    shared ``aiohttp.ClientSession``, makes the channels and starts the worker in the
    background; :meth:`stop` lets deliveries under way finish for ``grace_s`` seconds,
    then cancels them (they stay pending and are retried at the next start) and closes
    everything. :meth:`install` ties both to a Quart app's serving hooks.
    """

    def __init__(
        self,
        config: ChannelsConfig,
        workspace: Path,
        *,
        plans: tuple[ChannelPlan, ...] | None = None,
        secrets: Redactor | None = None,
        max_sends_per_turn: int = DEFAULT_MAX_SENDS_PER_TURN,
        random_source: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        poll_s: float = 2.0,
        grace_s: float = 5.0,
        outbox: OutboxStore | None = None,
        claim_s: float = 30.0,
        telemetry: Telemetry = NO_TELEMETRY,
        uploads: UploadStore | None = None,
    ) -> None:
        # Given when the caller has made them already: making them imports plugins.
        self._plans = channel_plans(config) if plans is None else plans
        # An outbox given is opened and closed by its owner (the server's storage).
        self._own_outbox = outbox is None
        self.outbox: OutboxStore = (
            SqliteOutbox(outbox_path(workspace), claim_s=claim_s) if outbox is None else outbox
        )
        self._channels: dict[str, OutboundChannel] = {}
        # The storage's uploads (with PostgreSQL, any replica's), else this workspace's.
        if uploads is None:
            uploads = FilesystemMediaStore.in_workspace(workspace)
        self.courier = Courier(
            self.outbox,
            self._channels,
            policy=retry_policy(config),
            random_source=random_source,
            clock=clock,
            # Every configured secret, not only the channels': a plugin's error could
            # quote anything its settings or the process hold.
            secrets=(secrets or Redactor()).secrets or channel_secrets(config),
            # A whole message (many parts and files) gets several request timeouts.
            attempt_timeout_s=config.outbox.timeout_s * 10,
            telemetry=telemetry,
            uploads=uploads,
            worker=process_name(),
        )
        self.worker = OutboxWorker(
            self.courier, concurrency=config.outbox.concurrency, poll_s=poll_s, claim_s=claim_s
        )
        known = {*BUILT_IN, *config.plugins}
        self.tool = MessageTool(
            self.courier,
            uploads,
            known=known,
            allow_chat_ids=config.allow_chat_ids,
            max_sends=max_sends_per_turn,
        )
        self._enabled = tuple(plan.name for plan in self._plans)
        self._grace_s = grace_s
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> tuple[str, ...]:
        """The names of the enabled channels."""
        return self._enabled

    async def start(self) -> None:
        if isinstance(self.outbox, SqliteOutbox):
            await self.outbox.open()  # a bad file stops start-up, not the first message
        if not self._plans:
            return  # nothing could be delivered: no session, no worker
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300)
        )
        for plan in self._plans:
            self._channels[plan.name] = plan.factory(plan.settings, self._session)
        # A plain asyncio task: it must outlive before_serving, and Quart runs on asyncio.
        self._task = asyncio.get_running_loop().create_task(self.worker.run())
        log.info("outbox: delivering to %s", ", ".join(self._enabled))

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            self.worker.stop()
            done, _ = await asyncio.wait({task}, timeout=self._grace_s)
            if not done:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        self._channels.clear()
        if isinstance(self.outbox, SqliteOutbox) and self._own_outbox:
            await self.outbox.close()

    def install(self, app: Quart) -> None:
        """Starts with the app's serving and stops with it."""
        if isinstance(self.outbox, SqliteOutbox):  # a database is opened by its owner
            add_opener(app, Opener("outbox", self.outbox.path, self.outbox.open))
        app.before_serving(self.start)
        app.after_serving(self.stop)


def outgoing_for(
    config: Config,
    *,
    with_tool: bool,
    outbox: OutboxStore | None = None,
    secrets: Redactor | None = None,
    telemetry: Telemetry = NO_TELEMETRY,
    uploads: UploadStore | None = None,
) -> Outgoing | None:
    """The outbound side ``config`` calls for: needed when the ``message`` tool is offered
    (``with_tool``: the LLM agent) or a channel is enabled (to drain what is pending)."""
    plans = channel_plans(config.channels)
    if not with_tool and not plans:
        return None
    return Outgoing(
        config.channels,
        config.workspace,
        plans=plans,
        outbox=outbox,
        claim_s=config.storage.lease_s,
        secrets=secrets,
        max_sends_per_turn=config.agents.defaults.max_sends_per_turn,
        telemetry=telemetry,
        uploads=uploads,
    )


def process_name() -> str:
    """This process as the record of each delivery attempt names it: host and pid, so an
    operator can tell replicas and ``--workers`` apart (each builds its runtime after
    the fork, so each gets its own pid)."""
    return f"{socket.gethostname()} pid {os.getpid()}"
