"""The composition root: configuration in, a ready Quart app out. Nothing is built at import."""

from __future__ import annotations

from quart import Quart

from nanobot_api.adapters.documents import DocumentReaderByKind
from nanobot_api.adapters.http.app import create_quart_app
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.media.filesystem import FilesystemMediaStore
from nanobot_api.adapters.storage.memory import InMemorySessionStore
from nanobot_api.app.attachments import AttachmentIntake
from nanobot_api.app.chat import ChatService
from nanobot_api.app.config import Config
from nanobot_api.app.echo import EchoAgent
from nanobot_api.domain.attachments import MIB, UploadLimits
from nanobot_api.domain.ports import Agent, Attachments, SessionStore


def upload_limits(config: Config) -> UploadLimits:
    api = config.api
    return UploadLimits(
        max_file_bytes=api.max_file_mb * MIB,
        max_files=api.max_files,
        max_request_bytes=api.max_request_mb * MIB,
    )


def build(
    config: Config,
    *,
    agent: Agent | None = None,
    store: SessionStore | None = None,
    attachments: Attachments | None = None,
) -> Quart:
    """The whole server for ``config``; each keyword replaces the part it names."""
    limits = upload_limits(config)
    media = FilesystemMediaStore(config.workspace / "media" / "api")
    service = ChatService(
        agent=agent or EchoAgent(),
        store=store or InMemorySessionStore(),
        attachments=attachments or AttachmentIntake(DocumentReaderByKind.standard(), media, limits),
        timeout_s=config.api.timeout,
        max_history_messages=config.agents.defaults.max_history_messages,
    )
    settings = HttpSettings(
        api_key=config.api.api_key,
        limits=limits,
        sse_keepalive_s=config.api.sse_keepalive_s,
        body_timeout_s=max(60.0, config.api.timeout),
        history=config.api.history,
        cors_origins=frozenset(config.api.cors_origins),
    )
    return create_quart_app(service, settings)
