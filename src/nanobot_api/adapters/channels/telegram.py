"""Telegram through the Bot API: ``sendMessage`` for text, ``sendDocument`` for files.

Texts go as plain text (no ``parse_mode``): a model's Markdown would otherwise be
refused whenever it is not valid Telegram markup. Each message holds at most 4096
characters, so longer texts are sent as several messages, cut at paragraph, line or
word boundaries. The Bot API has no idempotency key: a retry after a crash between
"sent" and "marked sent" can show a message twice.
"""

from __future__ import annotations

import aiohttp

from nanobot_api.adapters.channels.http import (
    Answer,
    TokenChannel,
    deliver_steps,
    failure,
    read_media,
)
from nanobot_api.domain.errors import DeliveryFailed
from nanobot_api.domain.outbox import (
    TELEGRAM_TEXT_LIMIT,
    DeliveryReceipt,
    OutboundMessage,
    split_text,
)


class TelegramOutboundChannel(TokenChannel):
    """An OutboundChannel posting to ``<api_base>/bot<token>/<method>``.

    The token is part of every URL, so no URL ever appears in an error or a log line.
    """

    name = "telegram"
    path_prefix = "bot{token}/"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        chat_id = message.chat_id

        async def send_text(_: int, text: str) -> str:
            return await self._call("sendMessage", json={"chat_id": chat_id, "text": text})

        async def send_file(_: int, path: str) -> str:
            name, data = await read_media(self.name, path)
            form = aiohttp.FormData()
            form.add_field("chat_id", chat_id)
            form.add_field("document", data, filename=name, content_type="application/octet-stream")
            return await self._call("sendDocument", data=form)

        texts = split_text(message.content, TELEGRAM_TEXT_LIMIT)
        return await deliver_steps(message, texts, send_text, send_file)

    async def _call(self, method: str, **body: object) -> str:
        answer = await self._post(method, **body)
        if answer.ok and answer.field("ok") is True:
            return str(answer.field("result", "message_id"))
        raise self._failure(answer)

    def _failure(self, answer: Answer) -> DeliveryFailed:
        # Telegram says how long to wait in the body as well as (sometimes) the header.
        retry_after_s = answer.wait_s("parameters", "retry_after")
        status = answer.status if not answer.ok else 502  # 200 with ok=false: a broken answer
        return failure(
            self.name, status, answer.field("description"), retry_after_s, (self._token,)
        )
