"""Slack through its Web API: ``chat.postMessage`` for text, the external upload flow
(``files.getUploadURLExternal``, a POST of the bytes, ``files.completeUploadExternal``)
for files.

Slack answers most errors with HTTP 200 and ``{"ok": false, "error": "..."}``, so the
``ok`` field decides, not the status. Each message holds at most 40,000 characters.
Slack has no idempotency key for ``chat.postMessage``: a retry after a crash between
"sent" and "marked sent" can show a message twice.
"""

from __future__ import annotations

from nanobot_api.adapters.channels.http import (
    Answer,
    TokenChannel,
    deliver_steps,
    failure,
    quote,
    read_media,
    request,
)
from nanobot_api.domain.errors import DeliveryFailed
from nanobot_api.domain.outbox import (
    SLACK_TEXT_LIMIT,
    DeliveryReceipt,
    OutboundMessage,
    split_text,
)

# Slack's "ok": false errors that say "try again later"; every other one is a refusal.
_TRANSIENT = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


class SlackOutboundChannel(TokenChannel):
    """An OutboundChannel calling ``<api_base>/<method>`` with ``Authorization: Bearer``."""

    name = "slack"
    authorization = "Bearer {token}"

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        channel_id = message.chat_id

        async def send_text(_: int, text: str) -> str:
            answer = await self._call(
                "chat.postMessage", json={"channel": channel_id, "text": text}
            )
            return str(answer.field("ts"))

        async def send_file(_: int, path: str) -> str:
            name, data = await read_media(self.name, path)
            ticket = await self._call(
                "files.getUploadURLExternal", data={"filename": name, "length": str(len(data))}
            )
            upload_url, file_id = ticket.field("upload_url"), ticket.field("file_id")
            if not isinstance(upload_url, str) or not isinstance(file_id, str):
                raise DeliveryFailed(f"{self.name}: upload answer without a URL", retryable=True)
            # The upload URL is pre-signed: it gets the bytes and never our token.
            uploaded = await request(
                self._session,
                self.name,
                "POST",
                upload_url,
                timeout_s=self._timeout_s,
                data=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            if not uploaded.ok:
                raise failure(self.name, uploaded.status, None, uploaded.retry_after_s, ())
            files = [{"id": file_id, "title": name}]
            await self._call(
                "files.completeUploadExternal", json={"files": files, "channel_id": channel_id}
            )
            return file_id

        texts = split_text(message.content, SLACK_TEXT_LIMIT)
        return await deliver_steps(message, texts, send_text, send_file)

    async def _call(self, method: str, **body: object) -> Answer:
        answer = await self._post(method, **body)
        if not answer.ok:
            raise failure(
                self.name,
                answer.status,
                answer.field("error"),
                answer.retry_after_s,
                (self._token,),
            )
        if answer.field("ok") is not True:
            error = answer.field("error")
            code = error if isinstance(error, str) else "no ok field in the answer"
            raise DeliveryFailed(
                f"{self.name}: {method} failed: {quote(code, (self._token,))}",
                retryable=code in _TRANSIENT or not isinstance(error, str),
                retry_after_s=answer.retry_after_s,
            )
        return answer
