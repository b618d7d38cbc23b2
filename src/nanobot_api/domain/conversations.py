"""Conversations: every session seen as an OpenAI conversation, its history as items.

A conversation is a session under another name: ``conversation: "x"`` and
``session_id: "x"`` name the same history. What a conversation adds is a record of
when it was created and its metadata; a session that never had one (made by chat
completions) is a conversation all the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final, Literal

import attrs

from nanobot_api.domain.conversation import History, Role
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.sessions import SessionKey

METADATA_MAX_PAIRS: Final = 16
METADATA_KEY_MAX: Final = 64
METADATA_VALUE_MAX: Final = 512
PAGE_MAX: Final = 100
PAGE_DEFAULT: Final = 20

Metadata = tuple[tuple[str, str], ...]
ItemKind = Literal["message", "function_call", "function_call_output"]
Order = Literal["asc", "desc"]


@attrs.frozen
class ConversationRecord:
    """A conversation's own facts beside its history: creation time and metadata."""

    session: SessionKey
    created_at: float
    metadata: Metadata = ()


@attrs.frozen
class SessionSummary:
    """A session as a listing shows it: when it began and last changed, how many turns."""

    session: SessionKey
    turns: int
    created_at: float
    updated_at: float


@attrs.frozen
class ConversationItem:
    """One entry of a conversation's history.

    ``id`` is stable while the history is: ``msg_<turn>_<index>`` counts turns from 1
    and messages within the turn from 0. A message has a role and text; a
    ``function_call`` has a call id, a tool name and its JSON arguments; a
    ``function_call_output`` a call id and the result text.
    """

    id: str
    kind: ItemKind
    role: Role | None = None
    text: str = ""
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None


def check_metadata(value: object, param: str = "metadata") -> Metadata:
    """OpenAI's metadata rules: at most 16 string pairs, keys up to 64 characters and
    values up to 512; ``None`` is none. Anything else is an InvalidRequest."""
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidRequest(f"{param} must be an object of strings", param)
    if len(value) > METADATA_MAX_PAIRS:
        raise InvalidRequest(f"{param} holds at most {METADATA_MAX_PAIRS} pairs", param)
    pairs: list[tuple[str, str]] = []
    for key, item in value.items():
        if not isinstance(key, str) or not 0 < len(key) <= METADATA_KEY_MAX:
            raise InvalidRequest(f"{param} keys are 1-{METADATA_KEY_MAX} characters", param)
        if not isinstance(item, str) or len(item) > METADATA_VALUE_MAX:
            where = f"{param}.{key}"
            raise InvalidRequest(f"{where} must be a string of at most 512 characters", where)
        pairs.append((key, item))
    return tuple(pairs)


def history_items(history: History) -> tuple[ConversationItem, ...]:
    """A session's committed history as items, oldest first.

    Server tool steps stay inside the agent's turn: a client shown a ``function_call``
    would try to run it. So only messages with text and the client's own tool calls
    and results (those answered outside the turn, with the calls left open in it) are
    items; system messages never are.
    """
    items: list[ConversationItem] = []
    for turn_no, record in enumerate(history, start=1):
        answered = {m.tool_call_id for m in record.messages if m.role == "tool"}
        for index, message in enumerate(record.messages):
            item_id = f"msg_{turn_no}_{index}"
            if message.role in ("user", "assistant") and message.content:
                items.append(ConversationItem(item_id, "message", message.role, message.content))
            for call_no, call in enumerate(message.tool_calls):
                if call.id not in answered:
                    items.append(
                        ConversationItem(
                            f"{item_id}_{call_no}",
                            "function_call",
                            call_id=call.id,
                            name=call.name,
                            arguments=call.arguments,
                        )
                    )
    return tuple(items)


def page_after(
    items: Sequence[ConversationItem],
    *,
    after: str | None,
    limit: int,
    order: Order,
) -> tuple[tuple[ConversationItem, ...], bool]:
    """One page of ``items`` (oldest first) in ``order``, starting after the item with id
    ``after``; with whether more follow. An ``after`` not among them is NotFound-free:
    it gives an empty page, as a cursor past the end does."""
    ordered = list(items) if order == "asc" else list(reversed(items))
    if after is not None:
        ids = [item.id for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    return tuple(ordered[:limit]), len(ordered) > limit


def check_page(limit: object, order: object) -> tuple[int, Order]:
    """The ``limit`` (1-100, default 20) and ``order`` (asc or desc, default desc) of a
    listing, from query text; else InvalidRequest."""
    if limit is None:
        count = PAGE_DEFAULT
    else:
        text = str(limit)
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= PAGE_MAX:
            raise InvalidRequest(f"limit must be an integer 1-{PAGE_MAX}", "limit")
        count = int(text)
    if order is None:
        return count, "desc"
    if order not in ("asc", "desc"):
        raise InvalidRequest("order must be 'asc' or 'desc'", "order")
    return count, "asc" if order == "asc" else "desc"


@attrs.frozen
class ConversationView:
    """A conversation as the API shows it: its record (made up for a session that never
    had one) and when it last changed."""

    record: ConversationRecord
    updated_at: float
