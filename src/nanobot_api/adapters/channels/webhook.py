"""Any HTTP receiver: one POST of a JSON event per outbox event.

The body::

    {"type": "message", "id": "<event id>", "channel": "webhook", "chat_id": "...",
     "content": "...", "media": [{"filename": "...", "size": 123, "data_base64": "..."}]}

Headers: ``X-Nanobot-Event-Id`` (the event id, the same on every retry, so a receiver
can drop a duplicate: delivery is at least once) and, when a secret is configured,
``X-Nanobot-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes with the secret>``.
The text is not split: the receiver gets it whole. A 2xx answer means delivered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import aiohttp

from nanobot_api.adapters.channels.http import failure, read_media, request
from nanobot_api.domain.outbox import DeliveryReceipt, OutboundMessage

EVENT_ID_HEADER = "X-Nanobot-Event-Id"
SIGNATURE_HEADER = "X-Nanobot-Signature"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Nanobot-Signature`` value for ``body``: ``sha256=<hex digest>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookOutboundChannel:
    """An OutboundChannel POSTing each event as JSON to one URL.

    The URL counts as a secret (many receivers put a token in it): it appears in no
    error, and neither does the signing secret.
    """

    name = "webhook"

    def __init__(
        self, session: aiohttp.ClientSession, url: str, secret: str = "", *, timeout_s: float = 30.0
    ) -> None:
        self._session = session
        self._url = url
        self._secret = secret
        self._timeout_s = timeout_s

    async def send(self, message: OutboundMessage) -> DeliveryReceipt:
        receipt = DeliveryReceipt(self.name, message.chat_id, (message.event_id,))
        if message.progress >= 1:  # the one step is already done
            return receipt
        media = []
        for path in message.media:
            name, data = await read_media(self.name, path)
            encoded = base64.b64encode(data).decode("ascii")
            media.append({"filename": name, "size": len(data), "data_base64": encoded})
        event = {
            "type": "message",
            "id": message.event_id,
            "channel": message.channel,
            "chat_id": message.chat_id,
            "content": message.content,
            "media": media,
        }
        body = json.dumps(event, ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            EVENT_ID_HEADER: message.event_id,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = signature(self._secret, body)
        answer = await request(
            self._session,
            self.name,
            "POST",
            self._url,
            timeout_s=self._timeout_s,
            data=body,
            headers=headers,
        )
        if not answer.ok:
            # The status only: a receiver's own words could quote any part of the URL
            # (a token in its path or query), which a scrub of the whole URL would miss.
            raise failure(self.name, answer.status, None, answer.retry_after_s, ())
        return receipt
