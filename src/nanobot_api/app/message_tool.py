"""The ``message`` tool: the model's way to send something somewhere other than its reply.

API turns run in the synthetic ``api`` channel, so nothing reaches Telegram, Discord,
Slack or a webhook unless the model calls this tool with an explicit ``channel`` and
``chat_id``. What happens then:

- an enabled channel: the event is written to the outbox, then delivered at once; a
  failure worth retrying leaves it pending for the background worker;
- a channel that is not enabled (or does not exist): the event is kept in the outbox
  as ``queued`` and not delivered;
- no channel: the text belongs to the current API caller and is streamed into the reply.

Every outcome is told to the model in plain words as the tool's result.

A model can be talked into misusing the tool (a prompt-injected message or document),
so its reach is bounded: ``media`` names only files uploaded in the same session (never
the workspace's databases, configs or other sessions' uploads); a channel may list the
only chat ids it sends to (``allowChatIds``); and one turn makes at most
``max_sends`` sends. Every refusal is the tool's result, never a failed turn.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Collection, Mapping

import anyio.to_thread

from nanobot_api.app.outbox import Courier, describe
from nanobot_api.domain.attachments import MIB, size_label
from nanobot_api.domain.errors import InvalidRequest
from nanobot_api.domain.models import JsonObject, JsonValue, ToolContext, ToolSpec
from nanobot_api.domain.outbox import OutboundMessage, OutboxEvent, claimed
from nanobot_api.domain.ports import SessionUploads
from nanobot_api.domain.sessions import API_CHANNEL, SessionKey

# The largest file the platforms take from a bot (Telegram's 50 MB upload limit).
DEFAULT_MAX_MEDIA_BYTES = 50 * MIB
DEFAULT_MAX_SENDS_PER_TURN = 5
_SENDS = "message.sends"

DESCRIPTION = (
    "Send a message to a chat on another channel: for proactive or cross-channel sends "
    "only (notify someone on Telegram, post to a Discord or Slack channel, call the "
    "webhook). Do NOT use it to answer the current user: your normal reply already "
    "reaches them. With `channel`, `chat_id` is required. Without `channel`, the text is "
    "added to the current reply. `media` lists files the user uploaded in this "
    "conversation, by their file names, to attach."
)


def new_event_id() -> str:
    """16 hex characters: unguessable, short enough for the CLI and Discord's nonce."""
    return secrets.token_hex(8)


class MessageTool:
    """The ``message`` tool (implements the Tool port) over an outbox and its courier.

    ``known`` names every channel this server knows of (enabled or not), so a result can
    tell "not enabled" from "no such channel"; the enabled ones are the courier's.
    ``uploads`` finds the files a session uploaded; ``allow_chat_ids`` lists, for a
    channel, the only chat ids it may send to (a channel not listed sends anywhere);
    ``max_sends`` bounds the sends of one turn.
    """

    def __init__(
        self,
        courier: Courier,
        uploads: SessionUploads,
        *,
        known: Collection[str] = (),
        allow_chat_ids: Mapping[str, Collection[str]] | None = None,
        max_sends: int = DEFAULT_MAX_SENDS_PER_TURN,
        max_media_bytes: int = DEFAULT_MAX_MEDIA_BYTES,
        new_id: Callable[[], str] = new_event_id,
    ) -> None:
        self._courier = courier
        self._uploads = uploads
        self._known = frozenset(known)
        self._allowed = {
            channel: frozenset(ids) for channel, ids in (allow_chat_ids or {}).items() if ids
        }
        self._max_sends = max_sends
        self._max_media_bytes = max_media_bytes
        self._new_id = new_id

    @property
    def spec(self) -> ToolSpec:
        enabled = ", ".join(sorted(self._courier.channels)) or "none"
        return ToolSpec(
            "message",
            f"{DESCRIPTION} Enabled channels: {enabled}.",
            {
                "type": "object",
                "properties": {
                    "content": {"type": "string", "description": "The text to send."},
                    "channel": {
                        "type": "string",
                        "description": "Where to send: telegram, discord, slack, webhook...",
                    },
                    "chat_id": {
                        "type": ["string", "integer"],
                        "description": "The chat, channel or user id on that channel.",
                    },
                    "media": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Files the user uploaded in this conversation, "
                        "by file name.",
                    },
                },
                "required": ["content"],
                "additionalProperties": False,
            },
        )

    async def call(self, arguments: JsonObject, context: ToolContext) -> str:
        content = _text(arguments.get("content"))
        channel = _text(arguments.get("channel")).strip().lower()
        raw_chat = arguments.get("chat_id")
        chat_id = "" if raw_chat is None else str(raw_chat).strip()
        sent = context.tally.get(_SENDS, 0)
        if sent >= self._max_sends:
            raise InvalidRequest(
                f"this turn already made {sent} sends, the most one turn may make; nothing was sent"
            )
        media = await self._media(arguments.get("media"), context.session)
        if not content.strip() and not media:
            raise InvalidRequest("content is empty; there is nothing to send")
        if not channel or (channel == API_CHANNEL and chat_id in ("", context.session.session_id)):
            result = await self._to_caller(content, media, context)
            context.tally[_SENDS] = sent + 1
            return result
        if channel == API_CHANNEL:
            raise InvalidRequest("the api channel can only reach the current caller")
        if not chat_id:
            raise InvalidRequest(f"chat_id is required when channel is given ({channel!r})")
        allowed = self._allowed.get(channel)
        if allowed is not None and chat_id not in allowed:
            raise InvalidRequest(
                f"chat {chat_id!r} is not among the chats {channel} may send to "
                "(allowChatIds); nothing was sent"
            )
        context.tally[_SENDS] = sent + 1
        message = OutboundMessage(self._new_id(), channel, chat_id, content, media)
        if channel not in self._courier.channels:
            return await self._queue(message)
        return await self._deliver(message)

    async def _to_caller(self, content: str, media: tuple[str, ...], context: ToolContext) -> str:
        if media:
            raise InvalidRequest(
                "media can only be sent through a channel; the reply to the current "
                "caller carries text only"
            )
        # The paragraph break keeps the model's next words from running into this text.
        await context.reply.send(content + "\n\n")
        return "Sent to the current caller as part of your reply (no channel used)."

    async def _queue(self, message: OutboundMessage) -> str:
        event = OutboxEvent.queued(message, self._courier.now())
        await self._courier.outbox.enqueue(event)
        if message.channel in self._known:
            why = f"Channel '{message.channel}' is not enabled"
        else:
            enabled = ", ".join(sorted(self._courier.channels)) or "none"
            why = f"There is no channel named '{message.channel}' (enabled: {enabled})"
        return (
            f"{why}, so nothing was delivered. The message is kept in the outbox as "
            f"queued (event {event.id})."
        )

    async def _deliver(self, message: OutboundMessage) -> str:
        courier = self._courier
        now = courier.now()
        event = claimed(OutboxEvent.pending(message, now), now, courier.worker)
        # In flight before it is stored, so the worker never picks it up meanwhile.
        courier.in_flight.add(event.id)
        try:
            await courier.outbox.enqueue(event)
        except BaseException:
            courier.in_flight.discard(event.id)
            raise
        after, _ = await courier.deliver(event)
        address = after.address
        if after.status == "delivered":
            return f"Message delivered to {address} (event {after.id})."
        if after.status == "pending":
            return (
                f"Message not delivered to {address} yet ({after.last_error}). It is saved "
                f"in the outbox as event {after.id} ({describe(after, courier.now())}) and "
                "will be retried automatically."
            )
        if after.status == "queued":  # its channel was switched off meanwhile
            return f"Channel '{after.channel}' is not enabled; the message is queued."
        return (
            f"Message could not be delivered to {address}: {after.last_error}. "
            f"It is kept in the outbox as event {after.id}, marked failed."
        )

    async def _media(self, value: JsonValue, session: SessionKey) -> tuple[str, ...]:
        if not isinstance(value, list):
            return ()
        return tuple([await self._upload(str(item), session) for item in value])

    async def _upload(self, given: str, session: SessionKey) -> str:
        """The path of a file this session uploaded that ``given`` names, if not too
        large; else InvalidRequest naming it. Nothing but uploads is ever looked at."""
        path = await self._uploads.find(session, given)
        if path is None:
            raise InvalidRequest(
                f"media {given!r} is not a file uploaded in this conversation; nothing was sent"
            )
        size = await anyio.to_thread.run_sync(os.path.getsize, path)
        if size > self._max_media_bytes:
            shown = size_label(self._max_media_bytes)
            raise InvalidRequest(f"media file {given!r} is over {shown}; nothing was sent")
        return path


def _text(value: JsonValue) -> str:
    return value if isinstance(value, str) else ""
