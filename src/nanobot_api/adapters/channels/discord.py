"""Discord through its REST API: "Create Message" in a channel, as a bot.

Each message holds at most 2000 characters, so longer texts are sent as several
messages; each file goes in a message of its own (multipart, ``payload_json`` plus
``files[0]``). Mentions are switched off (``allowed_mentions.parse = []``): a model's
"@everyone" must not ping a whole server.

Duplicates: every step carries a ``nonce`` derived from the outbox event id and the
step's number, with ``enforce_nonce: true``. Discord then answers a repeated nonce
(from the same bot, within a few minutes) with the message it already created instead
of creating another, so a retry after a crash between "sent" and "marked sent" does
not post twice, as long as it comes within those minutes.
"""

from __future__ import annotations

import hashlib
import json
from urllib.parse import quote

import aiohttp

from nanobot_api.adapters.channels.http import (
    TokenChannel,
    deliver_steps,
    failure,
    read_media,
)
from nanobot_api.domain.outbox import (
    DISCORD_TEXT_LIMIT,
    DeliveryReceipt,
    OutboundMessage,
    split_text,
)

_NONCE_CHARS = 25  # Discord's limit for a string nonce


def nonce(event_id: str, step: int) -> str:
    """The nonce of one step of an event: the same on every retry, unique per step."""
    return hashlib.sha256(f"{event_id}:{step}".encode()).hexdigest()[:_NONCE_CHARS]


class DiscordOutboundChannel(TokenChannel):
    """An OutboundChannel posting to ``<api_base>/channels/<chat_id>/messages`` with
    ``Authorization: Bot <token>``."""

    name = "discord"
    authorization = "Bot {token}"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        # quote(): a chat id is the model's text and must stay one path segment.
        messages = f"channels/{quote(message.chat_id, safe='')}/messages"

        def payload(step: int) -> dict[str, object]:
            return {
                "nonce": nonce(message.event_id, step),
                "enforce_nonce": True,
                "allowed_mentions": {"parse": []},
            }

        async def send_text(step: int, text: str) -> str:
            return await self._create(messages, json={**payload(step), "content": text})

        async def send_file(step: int, path: str) -> str:
            name, data = await read_media(self.name, path)
            form = aiohttp.FormData()
            body = {**payload(step), "attachments": [{"id": 0, "filename": name}]}
            form.add_field("payload_json", json.dumps(body), content_type="application/json")
            form.add_field("files[0]", data, filename=name, content_type="application/octet-stream")
            return await self._create(messages, data=form)

        texts = split_text(message.content, DISCORD_TEXT_LIMIT)
        return await deliver_steps(message, texts, send_text, send_file)

    async def _create(self, path: str, **body: object) -> str:
        answer = await self._post(path, **body)
        if answer.ok:
            return str(answer.field("id"))
        detail = answer.field("message")
        # A 429's body says how long to wait, in seconds with a fraction; the header rounds.
        wait_s = answer.wait_s("retry_after")
        raise failure(self.name, answer.status, detail, wait_s, (self._token,))
