"""Wiring the Responses and Conversations APIs into a built app."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import attrs
from quart import Quart

from nanobot_api.adapters.http.ids import new_id
from nanobot_api.adapters.http.responses_json import response_error
from nanobot_api.adapters.http.responses_routes import install_conversations, install_responses
from nanobot_api.adapters.http.settings import HttpSettings
from nanobot_api.adapters.storage.postgres_db import PostgresDatabase
from nanobot_api.adapters.storage.postgres_responses import (
    PostgresConversationStore,
    PostgresResponseStore,
)
from nanobot_api.adapters.storage.sqlite_responses import (
    SqliteConversationStore,
    SqliteResponseStore,
    responses_path,
)
from nanobot_api.app.conversations import ConversationsService
from nanobot_api.app.responses import LEASE_S, ResponsesService
from nanobot_api.app.wiring.lifecycle import Opener, add_opener
from nanobot_api.domain.conversations import SessionSummary
from nanobot_api.domain.ports import (
    ChatTurns,
    ForgetsSessionRecords,
    SessionCatalog,
    SessionStore,
)


class _CountsCatalog:
    """A SessionCatalog for a session store that keeps no times: its sessions, unordered."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def summaries(self, channel: str) -> tuple[SessionSummary, ...]:
        counts = await self._store.sessions()
        return tuple(
            SessionSummary(key, count, 0.0, 0.0)
            for key, count in counts.items()
            if key.channel == channel
        )


def catalog_of(store: SessionStore) -> SessionCatalog:
    """The store itself when it lists its sessions with times, else a plain listing."""
    if callable(getattr(store, "summaries", None)):
        return store  # type: ignore[return-value]
    return _CountsCatalog(store)


@attrs.frozen
class ResponseStores:
    """Where the Responses and Conversations APIs keep their records."""

    responses: SqliteResponseStore | PostgresResponseStore
    conversations: SqliteConversationStore | PostgresConversationStore

    @property
    def records(self) -> tuple[ForgetsSessionRecords, ...]:
        """The stores a sweep of sessions clears as well."""
        return self.responses, self.conversations

    @property
    def files(self) -> tuple[SqliteResponseStore | SqliteConversationStore, ...]:
        """The stores in SQLite files of this process's own (none with a database)."""
        stores = (self.responses, self.conversations)
        return tuple(
            s for s in stores if isinstance(s, SqliteResponseStore | SqliteConversationStore)
        )


def response_stores(workspace: Path, database: PostgresDatabase | None = None) -> ResponseStores:
    """The stores, none opened: in the database every replica shares (so a background
    response is followed and cancelled from any of them), else in
    ``<workspace>/responses.sqlite3``."""
    if database is not None:
        return ResponseStores(PostgresResponseStore(database), PostgresConversationStore(database))
    path = responses_path(workspace)
    return ResponseStores(SqliteResponseStore(path), SqliteConversationStore(path))


def install_responses_api(
    app: Quart,
    turns: ChatTurns,
    sessions: SessionStore,
    settings: HttpSettings,
    stores: ResponseStores,
    *,
    lease_s: float = LEASE_S,
    redact: Callable[[str], str] = str,
) -> None:
    """Adds ``/v1/responses`` and ``/v1/conversations`` to ``app``, over ``turns`` and
    ``sessions``, keeping their records in ``stores``."""
    responses = stores.responses
    service = ResponsesService(
        turns,
        sessions,
        responses,
        responses,
        paused=responses,
        liveness=responses,
        spawn=app.add_background_task,
        new_id=lambda: new_id("resp_"),
        describe_failure=response_error,
        redact=redact,
        lease_s=lease_s,
    )
    install_responses(app, service, settings)
    install_conversations(
        app,
        ConversationsService(
            sessions,
            catalog_of(sessions),
            stores.conversations,
            new_id=lambda: "conv_" + secrets.token_hex(16),
        ),
    )
    # Opened on first use, not at start-up: a server whose clients never use these
    # APIs keeps no file for them in its workspace. A file already there is checked
    # at start-up, though: a corrupt one is one line and exit 2, not a 500 later.
    files = stores.files
    for file in files:
        app.after_serving(file.close)
    if files:
        add_opener(app, Opener("responses", files[0].path, partial(_open_if_present, files)))


async def _open_if_present(files: Sequence[SqliteResponseStore | SqliteConversationStore]) -> None:
    for file in files:
        await file.open_if_present()


async def check_responses_file(workspace: Path) -> None:
    """Opens and closes ``<workspace>/responses.sqlite3`` if it exists, raising what
    opening it raises (for a parent process checking before its workers start)."""
    # Not ``async with``: that opens the file, making it when it is not there.
    store = SqliteResponseStore(responses_path(workspace))
    try:
        await store.open_if_present()
    finally:
        await store.close()
