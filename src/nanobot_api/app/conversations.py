"""The Conversations use case: sessions seen as conversations, listed, read and deleted."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs

from nanobot_api.domain.conversation import Message, TurnRecord
from nanobot_api.domain.conversations import (
    ConversationItem,
    ConversationRecord,
    ConversationView,
    Metadata,
    Order,
    history_items,
    page_after,
)
from nanobot_api.domain.errors import InvalidRequest, NotFound
from nanobot_api.domain.ports import ConversationStore, SessionCatalog, SessionStore
from nanobot_api.domain.sessions import SessionKey


class ConversationsService:
    """Conversations over the session store; the Conversations port."""

    def __init__(
        self,
        sessions: SessionStore,
        catalog: SessionCatalog,
        records: ConversationStore,
        *,
        new_id: Callable[[], str],
    ) -> None:
        self._sessions = sessions
        self._catalog = catalog
        self._records = records
        self._new_id = new_id

    async def create(
        self, channel: str, metadata: Metadata, items: Sequence[Message] = ()
    ) -> ConversationRecord:
        """A new conversation (a session with a fresh ``conv_`` id) holding ``items``.

        Items are grouped into turns, each starting at a user message; anything but
        user and assistant messages, or a first item not from the user, is refused.
        """
        turns = _turns_of(items)
        record = ConversationRecord(SessionKey(channel, self._new_id()), time.time(), metadata)
        await self._records.put(record)
        for turn in turns:
            await self._sessions.commit(record.session, turn)
        return record

    async def get(self, session: SessionKey) -> ConversationView:
        """The conversation; NotFound for a session with neither record nor turns."""
        record = await self._records.get(session)
        summary = next(
            (s for s in await self._catalog.summaries(session.channel) if s.session == session),
            None,
        )
        if record is None and summary is None:
            raise NotFound(f"No conversation found with id '{session.session_id}'", "id")
        if record is None:
            assert summary is not None
            record = ConversationRecord(session, summary.created_at)
        updated = summary.updated_at if summary is not None else record.created_at
        return ConversationView(record, updated)

    async def update(self, session: SessionKey, metadata: Metadata) -> ConversationRecord:
        """Replaces the conversation's metadata; NotFound as ``get``."""
        view = await self.get(session)
        record = attrs.evolve(view.record, metadata=metadata)
        await self._records.put(record)
        return record

    async def delete(self, session: SessionKey) -> None:
        """Forgets the conversation and its history; NotFound as ``get``."""
        await self.get(session)
        await self._sessions.clear(session)
        await self._records.delete(session)

    async def items(
        self, session: SessionKey, *, after: str | None, limit: int, order: Order
    ) -> tuple[tuple[ConversationItem, ...], bool]:
        """A page of the conversation's history as items, and whether more follow."""
        await self.get(session)
        history = await self._sessions.history(session)
        return page_after(history_items(history), after=after, limit=limit, order=order)

    async def listing(
        self, channel: str, *, after: str | None, limit: int
    ) -> tuple[tuple[ConversationView, ...], bool]:
        """The channel's conversations, most recently changed first, a page at a time
        (``after``: the id of the last one of the previous page)."""
        views: dict[SessionKey, ConversationView] = {
            r.session: ConversationView(r, r.created_at)
            for r in await self._records.records(channel)
        }
        for summary in await self._catalog.summaries(channel):
            known = views.get(summary.session)
            record = (
                known.record if known else ConversationRecord(summary.session, summary.created_at)
            )
            views[summary.session] = ConversationView(record, summary.updated_at)
        ordered = sorted(
            views.values(), key=lambda v: (v.updated_at, v.record.session.session_id), reverse=True
        )
        if after is not None:
            ids = [v.record.session.session_id for v in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        return tuple(ordered[:limit]), len(ordered) > limit


def _turns_of(items: Sequence[Message]) -> list[TurnRecord]:
    turns: list[list[Message]] = []
    for index, message in enumerate(items):
        if message.role not in ("user", "assistant"):
            raise InvalidRequest(
                f"items[{index}] must be a user or assistant message", f"items[{index}]"
            )
        if message.role == "user":
            turns.append([message])
        elif not turns:
            raise InvalidRequest("items must begin with a user message", "items")
        else:
            turns[-1].append(message)
    return [TurnRecord(tuple(turn)) for turn in turns]
